"""`extproc claude` from a second terminal: the gateway's keys decide, the pinned CLI is found."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import httpx

from tests.support import ROOT
from tests.support.gateway import gateway_ports, start_gateway, stop_gateway

EXTPROC_CLAUDE = (sys.executable, "-m", "extproc", "claude")
CLAUDE = (ROOT / "node_modules" / ".bin" / "claude").resolve()


def path_without_claude() -> str:
    return os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if not shutil.which("claude", path=p)
    )


def config_text(fake_anthropic, ports: dict[str, int]) -> str:
    """Every provider's key lives in the gateway (none passes the client's credentials)."""
    return f"""\
listener: {{port: {ports["listener"]}, admin_port: {ports["admin"]}}}
sidecar: {{port: {ports["sidecar"]}, health_port: {ports["health"]}}}
routing: {{model_dir: /nonexistent}}
llm_providers:
  - model: anthropic/claude-sonnet-4-5
    base_url: {fake_anthropic.url}
    access_key: $TEST_ANTHROPIC_KEY
    default: true
  - model: anthropic/claude-haiku-4-5
    base_url: {fake_anthropic.url}
    access_key: $TEST_ANTHROPIC_KEY
  - model: openai/gpt-4.1
    access_key: $TEST_NEVER_SET_KEY
model_aliases:
  claude-*haiku*: anthropic/claude-haiku-4-5
"""


def test_second_terminal_without_keys_or_global_install(tmp_path, fake_anthropic):
    """Keys exported only where `extproc up` runs; Claude Code installed only by `npm ci`
    (node_modules/.bin of the folder extproc claude runs in), nothing on PATH."""
    ports = gateway_ports()
    gateway = start_gateway(config_text(fake_anthropic, ports), tmp_path, ports["listener"])
    try:
        health = f"http://127.0.0.1:{ports['health']}/credentials"
        assert httpx.get(health).json() == {
            "passes_client_credentials": False,
            "gateway_keys": False,
            "unset_key_variables": ["TEST_NEVER_SET_KEY"],
        }
        project = tmp_path / "project"
        (project / "node_modules" / ".bin").mkdir(parents=True)
        (project / "node_modules" / ".bin" / "claude").symlink_to(CLAUDE)
        home = tmp_path / "home"
        home.mkdir()
        env = {
            "PATH": path_without_claude(),
            "HOME": str(home),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        }
        result = subprocess.run(
            [*EXTPROC_CLAUDE, "--config", str(gateway.config_path), "-p", "hello"],
            capture_output=True,
            text=True,
            env=env,
            cwd=project,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == fake_anthropic.answer
        # This terminal's unset TEST_ANTHROPIC_KEY is not the gateway's business...
        assert "TEST_ANTHROPIC_KEY" not in result.stderr
        # ...but the gateway's own unset key is worth a note.
        assert "note: the gateway has no TEST_NEVER_SET_KEY" in result.stderr
    finally:
        stop_gateway(gateway)


def test_missing_claude_advises_the_pinned_install(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("llm_providers:\n  - model: anthropic/x\nlistener: {port: 9}\n")
    result = subprocess.run(
        [*EXTPROC_CLAUDE, "--config", str(config), "-p", "hi"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path_without_claude()},
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "is in neither ./node_modules/.bin nor PATH" in result.stderr
    assert "`npm ci` in the extproc project folder" in result.stderr
    assert "npm install -g" not in result.stderr
