"""What the fake providers share: a threaded HTTP/1.1 server that records every request, and
the ways a provider fails before answering (`failure`), which failover is tested against."""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self

Failure = Literal["429", "503", "529", "silent"]
"""How a fake told to fail answers every request: that status with its provider's own error
body (429 with `retry-after`), or, `silent`, not at all (the connection stays open)."""


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
    listen_port: int = 0
    """The port it first listens on: 0, any free one (`port` says which); else the one a
    config already names, for a fake started in place of a process (tests/unit/commands/
    test_up.py)."""
    failure: Failure | Literal["refused"] | None = None
    """Set to make every later request fail this way (the request is still recorded);
    `refused`: connections are refused (`refuse_connections`) once `answered_first` requests
    have been answered."""
    answered_first: int = 0
    """With `failure` set: how many of the requests it records (`received`) are answered
    before it fails, so that a test can fail a provider at an exact point of a session."""
    retry_after: str = "7"
    """The `retry-after` of a 429 failure, in seconds."""
    released: threading.Event = field(default_factory=threading.Event)
    """Set by `stop`: ends the waits of requests a silent fake holds."""
    connections: set[socket.socket] = field(default_factory=set)
    holder: socket.socket | None = None
    """Keeps the port while connections are refused (`refuse_connections`)."""

    def failure_body(self, status: int) -> bytes:
        """The provider's own error body for `status` (429, 503, 529)."""
        raise NotImplementedError

    def fail(self, handler: BaseHTTPRequestHandler, failure: Failure) -> None:
        if failure == "silent":
            self.released.wait()
            return
        status = int(failure)
        headers = {"retry-after": self.retry_after} if status == 429 else {}
        send_json(handler, status, self.failure_body(status), headers)

    def refuse_connections(self) -> None:
        """Stop listening and close the connections open now (a client's pool may hold
        some): a connection to `url` is refused, as nothing listens, until `start`."""
        self.stop()
        for connection in list(self.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        # The port stays taken, bound but not listening (a connection to it is refused), so
        # that no other server gets it before `start` listens there again.
        self.holder = socket.socket()
        self.holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.holder.bind((self.host, self.port))

    def respond(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between SSE events

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                fake.connections.add(self.connection)

            def finish(self) -> None:
                fake.connections.discard(self.connection)
                super().finish()

            def handle_request(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake.received.append(Received(self.command, self.path, headers, body))
                if fake.failure is None or len(fake.received) <= fake.answered_first:
                    fake.respond(self, body)
                    if fake.failure == "refused" and len(fake.received) == fake.answered_first:
                        fake.refuse_connections()
                elif fake.failure == "refused":
                    fake.refuse_connections()  # this connection came before: it is cut
                else:
                    fake.fail(self, fake.failure)

            do_GET = do_HEAD = do_POST = handle_request

        # Started again after refuse_connections: on the same port, which configs name.
        port = self.server.server_address[1] if hasattr(self, "server") else self.listen_port
        if self.holder is not None:
            self.holder.close()
            self.holder = None
        self.released = threading.Event()
        self.server = ThreadingHTTPServer((self.host, port), Handler)
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
        self.released.set()
        if self.holder is not None:
            self.holder.close()
            self.holder = None
        self.server.shutdown()
        self.server.server_close()


OPENAI_FAILURES = {
    429: ("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
    503: ("The server is overloaded or not ready yet.", "server_error", None),
}
"""A failing OpenAI's message, type and code, by status (OpenAI's error codes guide,
https://platform.openai.com/docs/guides/error-codes: 429 rate limit, 503 overloaded)."""


def openai_failure(status: int) -> bytes:
    """OpenAI's error body for a 429 or 503; no OpenAI-format API answers 529."""
    message, kind, code = OPENAI_FAILURES[status]
    error = {"message": message, "type": kind, "param": None, "code": code}
    return json.dumps({"error": error}).encode()


@contextmanager
def started(fakes: dict[str, FakeServer]) -> Iterator[dict[str, FakeServer]]:
    """The fakes started, and stopped after."""
    for fake in fakes.values():
        fake.start()
    try:
        yield fakes
    finally:
        for fake in fakes.values():
            fake.stop()
