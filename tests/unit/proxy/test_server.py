"""The sidecar's health port as a load balancer, `extproc up` and `extproc claude` read it, and
the secret that keeps other local processes off its gRPC port. Streams through Envoy are
tests/e2e/test_server.py's."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

import orjson
import pytest

from extproc.config import parse
from extproc.metrics import Metrics
from extproc.providers import credentials
from extproc.proxy.exchange import Runtime
from extproc.proxy.server import ExtProcServer, envoy_state, presents
from tests.support.fake_server import FakeServer
from tests.support.gateway import free_port

CONFIG = "llm_providers:\n  - model: openai/gpt-4.1\n    access_key: $NO_SUCH_KEY_SET\n"


@dataclass(kw_only=True)
class FakeEnvoyReady(FakeServer):
    """Envoy's admin `/ready`: 200 LIVE once it serves, 503 with its state before."""

    state: str = "LIVE"

    def respond(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        data = f"{self.state}\n".encode()
        handler.send_response(200 if self.state == "LIVE" else 503)
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


async def ask(port: int, request_line: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_line + b"\r\nhost: x\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines)
    assert headers[b"content-length"] == str(len(body)).encode()
    assert headers[b"connection"] == b"close"
    return status, headers, body


@pytest.fixture
async def health():
    """A started server, not ready yet (its `ready` is a flag to set), and its health port."""
    config = parse(CONFIG, "config.yaml")
    flag = {"ready": False}
    server = ExtProcServer(
        Runtime(config, (), (), Metrics()), ready=lambda: flag["ready"], envoy_admin=None
    )
    port = free_port()
    await server.start("127.0.0.1", free_port(), port, max_body=1 << 20)
    yield server, port, flag
    await server.stop(0)


async def test_each_path_of_the_health_port(health):
    server, port, _ = health
    config = server.runtime.config
    assert await ask(port, b"GET /healthz HTTP/1.1") == (
        b"HTTP/1.1 200 OK",
        {b"content-type": b"text/plain", b"content-length": b"3", b"connection": b"close"},
        b"ok\n",
    )
    status, _, body = await ask(port, b"GET /config HTTP/1.1")
    assert (status, body) == (b"HTTP/1.1 200 OK", config.digest.encode() + b"\n")
    status, headers, body = await ask(port, b"GET /metrics HTTP/1.1")
    assert headers[b"content-type"] == b"text/plain; version=0.0.4"
    assert b"extproc_" in body and status == b"HTTP/1.1 200 OK"
    status, headers, body = await ask(port, credentials.PATH.encode().join([b"GET ", b" HTTP/1.1"]))
    assert (status, headers[b"content-type"]) == (b"HTTP/1.1 200 OK", b"application/json")
    assert orjson.loads(body) == credentials.summary(config)
    assert orjson.loads(body)["unset_key_variables"] == ["NO_SUCH_KEY_SET"]
    assert await ask(port, b"GET /nothing HTTP/1.1") == (
        b"HTTP/1.1 404 Not Found",
        {b"content-type": b"text/plain", b"content-length": b"10", b"connection": b"close"},
        b"not found\n",
    )
    assert (await ask(port, b"GET"))[0] == b"HTTP/1.1 404 Not Found"  # no path: "/"


async def test_a_request_line_past_the_readers_limit_gets_414(health):
    _, port, _ = health
    status, _, body = await ask(port, b"GET /" + b"a" * 70_000 + b" HTTP/1.1")
    assert (status, body) == (b"HTTP/1.1 414 URI Too Long", b"request line too long\n")


async def test_ready_once_the_router_is_and_with_envoy_when_up_runs_it(health):
    server, port, flag = health
    for path in (b"/ready", b"/ready/sidecar"):
        status, headers, body = await ask(port, b"GET " + path + b" HTTP/1.1")
        assert (status, body) == (b"HTTP/1.1 503 Service Unavailable", b"not ready\n")
        assert headers[b"content-type"] == b"text/plain"
    flag["ready"] = True
    for path in (b"/ready", b"/ready/sidecar"):
        status, headers, body = await ask(port, b"GET " + path + b" HTTP/1.1")
        assert (status, headers[b"content-type"], body) == (
            b"HTTP/1.1 200 OK",
            b"text/plain",
            b"ok\n",
        )
    envoy = FakeEnvoyReady(state="PRE_INITIALIZING").start()
    try:
        server.envoy_admin = f"127.0.0.1:{envoy.port}"
        status, _, body = await ask(port, b"GET /ready HTTP/1.1")
        assert (status, body) == (
            b"HTTP/1.1 503 Service Unavailable",
            b"not ready: envoy PRE_INITIALIZING\n",
        )
        # /ready/sidecar is the sidecar alone: what `extproc up` waits for before Envoy starts.
        assert (await ask(port, b"GET /ready/sidecar HTTP/1.1"))[2] == b"ok\n"
        envoy.state = "LIVE"
        assert (await ask(port, b"GET /ready HTTP/1.1"))[2] == b"ok\n"
    finally:
        envoy.stop()
    assert (await ask(port, b"GET /ready HTTP/1.1"))[2] == (
        f"not ready: envoy does not answer on 127.0.0.1:{envoy.port}\n".encode()
    )


def test_envoy_state_of_an_empty_refusal_names_the_status():
    envoy = FakeEnvoyReady(state="").start()
    try:
        assert envoy_state(f"127.0.0.1:{envoy.port}") == "answered 503"
    finally:
        envoy.stop()


@pytest.mark.parametrize(
    ("metadata", "accepted"),
    [
        ([("x-extproc-secret", "s3cret")], True),
        ([("x-extproc-secret", b"s3cret")], True),  # binary metadata
        ([("user-agent", "envoy"), ("x-extproc-secret", "s3cret")], True),
        ([("x-extproc-secret", "s3cre")], False),
        ([("x-extproc-secret", "s3cret ")], False),
        ([("x-other", "s3cret")], False),
        ([], False),
    ],
)
def test_only_the_exact_secret_under_its_key_lets_a_stream_in(metadata, accepted):
    assert presents(metadata, "s3cret") is accepted
