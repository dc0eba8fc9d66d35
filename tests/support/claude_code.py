"""The real Claude Code CLI (npm, pinned in package.json), run through `extproc claude`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
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


class Terminal:
    """The real Claude Code, interactive, in a tmux session of its own: `extproc claude` as a
    user runs it, typed into, its screen read back (tmux capture-pane)."""

    def __init__(self, gateway, tmp_path: Path, *args: str):
        if shutil.which("tmux") is None:
            raise AssertionError("tmux is not installed (apt-get install tmux; README)")
        home, project = tmp_path / "home", tmp_path / "project"
        home.mkdir(exist_ok=True)
        project.mkdir(exist_ok=True)
        # What a user's first run settles once: the theme, and trust in the project folder
        # (Claude Code runs no status line in a folder it has not been told to trust).
        settled = {
            "hasCompletedOnboarding": True,
            "theme": "dark",
            "projects": {str(project): {"hasTrustDialogAccepted": True}},
        }
        (home / ".claude.json").write_text(json.dumps(settled), encoding="utf-8")
        self.socket = f"extproc-test-{uuid.uuid4().hex[:12]}"
        env = {
            "PATH": f"{CLAUDE_BIN}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(home),
            "TERM": "xterm-256color",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            **PROVIDER_KEYS,
            **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
        }
        command = [sys.executable, "-m", "extproc", "claude", "--config", str(gateway.config_path)]
        size = ("-x", "120", "-y", "40")
        self.tmux(
            "new-session", "-d", "-s", "claude", *size, "-c", str(project), *command, *args, env=env
        )

    def tmux(self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
        result = subprocess.run(
            ["tmux", "-f", "/dev/null", "-L", self.socket, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=True,
        )
        return result.stdout

    def screen(self) -> str:
        """What the terminal shows (Claude Code's prompt sign is followed by a no-break space,
        read here as a space)."""
        return self.tmux("capture-pane", "-p", "-t", "claude").replace("\xa0", " ")

    def wait_for(self, text: str, timeout: float = 60) -> str:
        """The screen, once `text` is on it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never showed; the screen:\n{self.screen()}")

    def type(self, text: str) -> None:
        """Type `text` once Claude Code's prompt shows, and Enter once the prompt holds it."""
        self.wait_for("❯ ")
        self.tmux("send-keys", "-t", "claude", "-l", text)
        self.wait_for(f"❯ {text}")
        self.tmux("send-keys", "-t", "claude", "Enter")

    def paste(self, text: str) -> None:
        """Paste `text` as a terminal does (bracketed), and Enter once Claude Code shows it
        (a long paste as `[Pasted text #1]`)."""
        self.tmux("load-buffer", "-b", "paste", "-", stdin=text)
        self.tmux("paste-buffer", "-p", "-d", "-b", "paste", "-t", "claude")
        self.wait_for("[Pasted text #1")
        self.tmux("send-keys", "-t", "claude", "Enter")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


def claude_gateway_config(
    fake_anthropic, fake_openai, model_dir: Path, ports: dict[str, int], claude_key: str, rule: str
) -> str:
    """Every route of the tiny router leads to the OpenAI-format fake; Claude's own models go
    to the Anthropic fake, on `claude_key` (an `access_key` value; empty: the user's own key
    passes through); `rule` is the one entry of `rules:`."""
    from tests.support.tiny_model import ROUTES

    routes = "".join(f"      - {{name: {n}, description: '{d}'}}\n" for n, d in ROUTES)
    key = f"\n    access_key: {claude_key}" if claude_key else ""
    return f"""\
listener: {{port: {ports["listener"]}, admin_port: {ports["admin"]}}}
sidecar: {{port: {ports["sidecar"]}, health_port: {ports["health"]}}}
routing: {{model_dir: {model_dir}}}
llm_providers:
  - model: openai/gpt-4.1
    base_url: {fake_openai.url}/v1
    provider_interface: openai-chat
    access_key: $TEST_OPENAI_KEY
    routing_preferences:
{routes}  - model: anthropic/claude-sonnet-4-5
    base_url: {fake_anthropic.url}{key}
    default: true
  - model: anthropic/claude-haiku-4-5
    base_url: {fake_anthropic.url}{key}
model_aliases:
  claude-*haiku*: anthropic/claude-haiku-4-5
rules:
  - {rule}
"""
