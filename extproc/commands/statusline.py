"""`extproc statusline`: one line for Claude Code's status line, from the running gateway.

Claude Code runs the command after each message, with JSON about the session on stdin
(`session_id` among it), and shows the first line it prints. The gateway knows the session's
latest decision (extproc.proxy.sessions, on its health port). The command runs often, so it
imports only the standard library's small modules: no config parsing unless `--config` is
given, and a plain socket rather than urllib.request (which alone took ~90 ms to import).
Whatever goes wrong, it prints one short line and exits 0: a status line is no place for a
traceback.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from typing import Any
from urllib.parse import quote, urlsplit

DEFAULT_HEALTH_URL = "http://127.0.0.1:50052"
"""Where the sidecar's health port is with the default `sidecar` settings."""
SESSIONS_PATH = "/sessions/"
"""extproc.proxy.sessions.PATH (not imported: it would bring the decision modules along)."""
TIMEOUT_S = 0.5


def fetch(url: str, path: str) -> tuple[int, bytes]:
    """GET `path` from the health port at `url`: the status and body (OSError if unreachable)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    with socket.create_connection((host, port), timeout=TIMEOUT_S) as connection:
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        connection.sendall(request.encode())
        answer = b"".join(iter(lambda: connection.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split(b" ")
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise OSError(f"not an HTTP answer from {url}")
    return int(status_line[1]), body


def describe(record: dict[str, Any]) -> str:
    """`→ gpt-4.1 · code_generation · router 412 ms · $0.84 this session`; without a route,
    the source (alias, default, ...) in its place; the router's time only when it decided."""
    model = str(record.get("model", "?"))
    parts = [f"→ {model.split('/', 1)[-1]}", str(record.get("route") or record.get("source"))]
    router_ms = record.get("router_ms")
    if record.get("source") == "router" and isinstance(router_ms, int | float):
        parts.append(f"router {router_ms:.0f} ms")
    cost = record.get("cost_usd")
    if isinstance(cost, int | float):
        amount = "<$0.01" if 0 < cost < 0.005 else f"${cost:.2f}"
        parts.append(f"{amount} this session")
    return " · ".join(parts)


def status_line(stdin: str, health_url: str) -> str:
    """The line for the session that Claude Code's JSON on `stdin` names."""
    try:
        session = json.loads(stdin).get("session_id")
    except (ValueError, AttributeError):
        session = None
    if not isinstance(session, str) or not session:
        return "extproc: no session id from Claude Code"
    try:
        status, body = fetch(health_url, SESSIONS_PATH + quote(session, safe=""))
    except OSError:
        return f"extproc: gateway not reachable at {health_url}"
    except ValueError:  # a port that is not a number
        return f"extproc: {health_url} is not a health URL (http://HOST:PORT)"
    if status == 404:
        return "extproc: no routed request yet in this session"
    try:
        record = json.loads(body)
    except ValueError:
        record = None
    if status != 200 or not isinstance(record, dict):
        return f"extproc: the gateway answered {status}"
    return describe(record)


def health_url_of(config_path: str) -> str | None:
    """The health URL in the config at `config_path` (loading it costs tens of ms), or None
    when it can't be loaded."""
    from extproc.config import ConfigError, load

    try:
        return load(config_path).sidecar.health_url
    except (ConfigError, OSError):
        return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="extproc statusline",
        description="Print the routing of this Claude Code session (for its statusLine setting).",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--health", default=DEFAULT_HEALTH_URL, help="the sidecar's health URL (fastest)"
    )
    where.add_argument("--config", help="read the health URL from this config file")
    args = parser.parse_args(argv)
    health_url = health_url_of(args.config) if args.config else args.health
    if health_url is None:
        print(f"extproc: {args.config} is not a config that loads (extproc check says why)")
    else:
        print(status_line(sys.stdin.read(), health_url))
    return 0
