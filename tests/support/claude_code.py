"""The real Claude Code CLI (npm, pinned in package.json), run through `extproc claude`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT
from tests.support.gateway import PROVIDER_KEYS

CLAUDE_BIN = ROOT / "node_modules" / ".bin"


USER_KEY = "sk-ant-user-own-key"


def claude(gateway, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`extproc claude ARGS` as a user runs it, in a home and project directory of its own
    (the same ones again for the same `tmp_path`: `--continue` goes on with the session)."""
    home = tmp_path / "home"
    project = tmp_path / "project"
    home.mkdir(exist_ok=True)
    project.mkdir(exist_ok=True)
    env = {
        "PATH": f"{CLAUDE_BIN}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        # The user's own key: the Anthropic entries have no access_key, so it passes through.
        "ANTHROPIC_API_KEY": USER_KEY,
        **PROVIDER_KEYS,
        # `extproc claude` checks the config with the tree under test, not an installed one.
        **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
    }
    command = [sys.executable, "-m", "extproc", "claude", "--config", str(gateway.config_path)]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, cwd=project, timeout=120
    )


def decisions(gateway, received) -> list[dict]:
    """The access-log entries of the requests a fake received, in order."""
    ids = [r.headers["x-request-id"] for r in received if r.method == "POST"]
    return [gateway.wait_log(lambda e, i=i: e["request_id"] == i) for i in ids]
