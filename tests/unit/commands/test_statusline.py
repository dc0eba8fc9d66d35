"""`extproc statusline` as Claude Code runs it: JSON on stdin, one line out, exit 0, against
the sidecar's real health port."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from extproc.app import build_runtime
from extproc.commands.statusline import DEFAULT_HEALTH_URL, SESSIONS_PATH, describe
from extproc.config import SidecarSettings, parse
from extproc.decisions.decision import Decision
from extproc.decisions.routing import RouterStage
from extproc.proxy import sessions
from extproc.proxy.server import ExtProcServer
from tests.support.gateway import free_port

CONFIG = parse(
    "llm_providers:\n"
    "  - {model: anthropic/claude-sonnet-4-5, access_key: k, default: true}\n"
    "  - {model: openai/gpt-5.2-codex, access_key: k}\n"
)
SESSION = "6cc5e38d-2e3b-46b4-8640-d604974c71e1"
# What Claude Code passes on stdin (its statusLine docs), trimmed.
CLAUDE_JSON = {
    "hook_event_name": "Status",
    "session_id": SESSION,
    "model": {"id": "claude-sonnet-4-5", "display_name": "Sonnet 4.5"},
    "workspace": {"current_dir": "/tmp/project", "project_dir": "/tmp/project"},
    "cost": {"total_cost_usd": 0.01},
}


@pytest.fixture
def health() -> Iterator[tuple[str, ExtProcServer]]:
    """The sidecar's health port (the real handler) on a free port, and its server."""
    server = ExtProcServer(build_runtime(CONFIG, RouterStage(CONFIG.routing)))
    loop = asyncio.new_event_loop()
    port = free_port()
    listening = loop.run_until_complete(
        asyncio.start_server(server._serve_health, "127.0.0.1", port)
    )
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", server
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    listening.close()
    loop.close()


def statusline(stdin: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "extproc", "statusline", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.count("\n") == 1
    return result.stdout.rstrip("\n")


def test_the_routed_model_route_router_time_and_cost_of_the_session(health):
    url, server = health
    provider = CONFIG.provider_named("openai/gpt-5.2-codex")
    assert provider is not None
    store = server.runtime.sessions
    store.decided(SESSION, Decision("router", provider, "claude", "code generation", 412.4))
    store.answered(SESSION, {"input_tokens": 900, "output_tokens": 50}, cost_usd=0.8351)
    line = statusline(json.dumps(CLAUDE_JSON), "--health", url)
    assert line == "→ gpt-5.2-codex · code generation · router 412 ms · $0.84 this session"


def test_without_a_route_the_source_stands_in_and_no_cost_is_shown_until_known(health):
    url, server = health
    server.runtime.sessions.decided(SESSION, Decision("default", CONFIG.default_provider, "x"))
    line = statusline(json.dumps(CLAUDE_JSON), "--health", url)
    assert line == "→ claude-sonnet-4-5 · default"


@pytest.mark.parametrize(
    ("cost", "shown"), [(0, "$0.00"), (0.004, "<$0.01"), (0.006, "$0.01"), (12.345, "$12.35")]
)
def test_the_sessions_cost_in_cents(cost, shown):
    record = {"model": "ollama/qwen3", "route": "", "source": "alias", "cost_usd": cost}
    assert describe(record) == f"→ qwen3 · alias · {shown} this session"


def test_a_session_the_gateway_does_not_know(health):
    url, _ = health
    line = statusline(json.dumps(CLAUDE_JSON), "--health", url)
    assert line == "extproc: no routed request yet in this session"


def test_the_gateway_down():
    url = f"http://127.0.0.1:{free_port()}"
    assert statusline(json.dumps(CLAUDE_JSON), "--health", url) == (
        f"extproc: gateway not reachable at {url}"
    )


@pytest.mark.parametrize("stdin", ["", "not json", "[1]", '{"session_id": 7}'])
def test_input_without_a_session_id(stdin):
    assert statusline(stdin) == "extproc: no session id from Claude Code"


def test_the_health_url_is_read_from_a_config(health, tmp_path):
    url, server = health
    server.runtime.sessions.decided(SESSION, Decision("default", CONFIG.default_provider, "x"))
    port = url.rsplit(":", 1)[1]
    config = tmp_path / "config.yaml"
    config.write_text(
        f"sidecar: {{health_port: {port}}}\nllm_providers:\n  - model: openai/gpt-4.1\n",
        encoding="utf-8",
    )
    line = statusline(json.dumps(CLAUDE_JSON), "--config", str(config))
    assert line == "→ claude-sonnet-4-5 · default"


def test_the_defaults_are_the_sidecars():
    assert SidecarSettings().health_url == DEFAULT_HEALTH_URL
    assert SESSIONS_PATH == sessions.PATH


def test_its_imports_stay_small():
    """Claude Code runs it after every message: no config, router, gRPC or asyncio modules."""
    code = (
        "import sys; from extproc.commands import cli, statusline; "
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('extproc', 'yaml', 'grpc', 'torch', 'transformers', 'ctranslate2', 'asyncio'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == [
        "extproc",
        "extproc.commands",
        "extproc.commands.cli",
        "extproc.commands.statusline",
    ]


def test_a_health_url_or_config_it_cannot_use():
    stdin = json.dumps(CLAUDE_JSON)
    assert statusline(stdin, "--health", "http://127.0.0.1:port") == (
        "extproc: http://127.0.0.1:port is not a health URL (http://HOST:PORT)"
    )
    assert statusline(stdin, "--config", "/nonexistent/config.yaml") == (
        "extproc: /nonexistent/config.yaml is not a config that loads (extproc check says why)"
    )
