"""`extproc statusline` as Claude Code runs it: JSON on stdin, one line out, exit 0, against
the sidecar's real health port (or a port that answers what a test gives it)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from unittest import mock

import pytest

from extproc.app import build_runtime
from extproc.commands import cli
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


@contextlib.contextmanager
def health_answering(answer: bytes) -> Iterator[tuple[str, list[bytes]]]:
    """A port that reads one request, sends `answer` a few bytes at a time and closes: its
    URL, and the request it got once the block ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    requests: list[bytes] = []

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            request = b""
            while not request.endswith(b"\r\n\r\n") and (chunk := connection.recv(1024)):
                request += chunk
            requests.append(request)
            for start in range(0, len(answer), 7):
                connection.sendall(answer[start : start + 7])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", requests
    finally:
        thread.join(10)
        listener.close()


def statusline(stdin: str, *args: str) -> str:
    """What `extproc statusline ARGS` prints, run in this process: one line, exit code 0,
    nothing on stderr."""
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.object(sys, "stdin", io.StringIO(stdin)),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = cli.main(["statusline", *args])
    assert (code, err.getvalue()) == (0, "")
    assert out.getvalue().count("\n") == 1
    return out.getvalue().rstrip("\n")


def test_the_command_as_claude_code_runs_it(health):
    """`python -m extproc statusline`, as the settings `extproc claude` writes run it."""
    url, server = health
    provider = CONFIG.provider_named("openai/gpt-5.2-codex")
    assert provider is not None
    server.runtime.sessions.decided(SESSION, Decision("router", provider, "claude", "code", 20.0))
    result = subprocess.run(
        [sys.executable, "-m", "extproc", "statusline", "--health", url],
        input=json.dumps(CLAUDE_JSON),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "→ gpt-5.2-codex · code · router 20 ms\n",
        "",
    )


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


@pytest.mark.parametrize(
    ("record", "line"),
    [
        (
            {
                "model": "groq/openai/gpt-oss-120b",
                "route": "code",
                "source": "router",
                "router_ms": 411.6,
            },
            "→ openai/gpt-oss-120b · code · router 412 ms",
        ),
        (
            {"model": "openai/gpt-4.1", "route": "", "source": "alias", "router_ms": 3.0},
            "→ gpt-4.1 · alias",
        ),
        (
            {"model": "openai/gpt-4.1", "route": "code", "source": "router", "router_ms": None},
            "→ gpt-4.1 · code",
        ),
        ({"source": "default", "cost_usd": 0.005}, "→ ? · default · $0.01 this session"),
    ],
)
def test_the_line_for_each_kind_of_record(record, line):
    """The model without its provider's prefix, the route or else the source, the router's
    time only when the router decided, and `?` for a record without a model."""
    assert describe(record) == line


def test_it_asks_the_health_port_for_the_session_by_its_quoted_id():
    stdin = json.dumps({"session_id": "a/b c"})
    with health_answering(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n") as (url, got):
        assert statusline(stdin, "--health", url) == (
            "extproc: no routed request yet in this session"
        )
    assert got == [
        b"GET /sessions/a%2Fb%20c HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    ]


@pytest.mark.parametrize(
    ("answer", "line"),
    [
        (
            b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{"model": "openai/o3",'
            + b' "route": "", "source": "default"'
            + b" " * 70_000
            + b"}",
            "→ o3 · default",
        ),
        (
            b'HTTP/1.1 200 OK\r\n\r\n{"model": "openai/o3",\r\n\r\n"source": "default"}',
            "→ o3 · default",
        ),
        (
            b"HTTP/1.1 404\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n\r\n",
            "extproc: no routed request yet in this session",
        ),
        (b"HTTP/1.1 503 Service Unavailable\r\n\r\n", "extproc: the gateway answered 503"),
        (b"HTTP/1.1 200 OK\r\n\r\nnot json", "extproc: the gateway answered 200"),
        (b"HTTP/1.1 200 OK\r\n\r\n[1]", "extproc: the gateway answered 200"),
        (b'HTTP/1.1 403 Forbidden\r\n\r\n{"model": "x"}', "extproc: the gateway answered 403"),
    ],
)
def test_what_the_health_port_answers(answer, line):
    with health_answering(answer) as (url, _):
        assert statusline(json.dumps(CLAUDE_JSON), "--health", url) == line


@pytest.mark.parametrize("answer", [b"", b"SSH-2.0-OpenSSH_9.6\r\n", b"HTTP/1.1 OK\r\n\r\n"])
def test_an_answer_that_is_not_http_is_no_gateway(answer):
    with health_answering(answer) as (url, _):
        line = statusline(json.dumps(CLAUDE_JSON), "--health", url)
    assert line == f"extproc: gateway not reachable at {url}"


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.0.0.1", ("127.0.0.1", 80)),
        ("http://:50099", ("127.0.0.1", 50099)),
        ("http://localhost:50099", ("localhost", 50099)),
    ],
)
def test_where_it_connects_and_how_long_it_waits(url, address):
    """A URL without a port is port 80, without a host this machine; Claude Code waits for
    the line, so the command waits for the gateway half a second at most."""
    tried = []

    def refuse(where: tuple[str, int], timeout: float | None = None) -> socket.socket:
        tried.append((where, timeout))
        raise ConnectionRefusedError

    with mock.patch.object(socket, "create_connection", refuse):
        line = statusline(json.dumps(CLAUDE_JSON), "--health", url)
    assert line == f"extproc: gateway not reachable at {url}"
    assert tried == [(address, 0.5)]


def test_its_help_names_the_command_and_what_each_option_does(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        cli.main(["statusline", "--help"])
    assert exited.value.code == 0
    lines = [line.strip() for line in out.getvalue().splitlines()]
    assert lines[0] == "usage: extproc statusline [-h] [--health HEALTH | --config CONFIG]"
    for line in (
        "Print the routing of this Claude Code session (for its statusLine setting).",
        "--health HEALTH  the sidecar's health URL (fastest)",
        "--config CONFIG  read the health URL from this config file",
    ):
        assert line in lines


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("::1", "http://[::1]:50052"),
        ("::", "http://127.0.0.1:50052"),
        ("0.0.0.0", "http://127.0.0.1:50052"),
        ("10.0.0.5", "http://10.0.0.5:50052"),
    ],
)
def test_the_health_url_of_each_kind_of_address(address, url):
    """An IPv6 address goes in brackets, as a URL writes it: without them the status line
    could not read the port."""
    settings = dataclasses.replace(SidecarSettings(), health_address=address)
    assert settings.health_url == url
