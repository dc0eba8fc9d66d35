"""What the fake providers share: a threaded HTTP/1.1 server that records every request."""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def send_json(
    handler: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str] | None = None
) -> None:
    """A whole JSON response: `data` is the encoded body, `headers` any extra ones."""
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("content-length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@dataclass(kw_only=True)
class FakeServer:
    """Subclasses answer in `respond`; every request is in `received` first."""

    received: list[Received] = field(default_factory=list)
    host: str = "127.0.0.1"
    """Where it listens: the loopback, or the host's side of a container network that a test
    made (tests/e2e/test_docker.py)."""

    def respond(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between SSE events

            def log_message(self, *args: Any) -> None:
                pass

            def handle_request(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake.received.append(Received(self.command, self.path, headers, body))
                fake.respond(self, body)

            do_GET = do_HEAD = do_POST = handle_request

        self.server = ThreadingHTTPServer((self.host, 0), Handler)
        self.server.daemon_threads = True
        # A short poll: `stop` waits for it, at the end of every test that starts a fake.
        serve = functools.partial(self.server.serve_forever, poll_interval=0.02)
        threading.Thread(target=serve, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
