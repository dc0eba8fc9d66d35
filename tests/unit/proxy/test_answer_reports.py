"""Envoy's report of an answer the sidecar did not read (control/usage.lua): `POST
/sessions/<id>/answered` on the health port adds its counts and cost to the session's record,
and takes nothing else."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import orjson
import pytest

from extproc.app import build_runtime
from extproc.config import parse
from extproc.decisions.decision import Decision
from extproc.decisions.routing import RouterStage
from extproc.proxy.server import ExtProcServer
from extproc.proxy.sessions import SessionRecord

CONFIG_TEXT = (
    "llm_providers:\n  - {model: anthropic/claude-sonnet-4-5, access_key: k, default: true}\n"
)
SESSION = "6cc5e38d-2e3b-46b4-8640-d604974c71e1"
SECRET = 'a"secret\\'


class Writer:
    """What the health port writes back to one connection."""

    def __init__(self) -> None:
        self.sent = b""

    def write(self, data: bytes) -> None:
        self.sent += data

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass


def server_with_session(secret: str = "") -> ExtProcServer:
    config = parse(CONFIG_TEXT)
    if secret:
        config = replace(config, sidecar_secret=secret)
    runtime = build_runtime(config, RouterStage(config.routing))
    provider = config.provider_named("anthropic/claude-sonnet-4-5")
    assert provider is not None
    runtime.sessions.decided(SESSION, Decision("default", provider, "claude-sonnet-4-5"))
    return ExtProcServer(runtime)


def post(server: ExtProcServer, body: bytes, session: str = SESSION, **headers: str) -> bytes:
    """The status line of the health port's answer to a POST of `body`."""
    fields = {"content-length": str(len(body)), **headers}
    raw = (
        f"POST /sessions/{session}/answered HTTP/1.1\r\nhost: extproc-health\r\n".encode()
        + b"".join(f"{name}: {value}\r\n".encode() for name, value in fields.items())
        + b"\r\n"
        + body
    )

    async def serve() -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        writer = Writer()
        await server._serve_health(reader, writer)  # type: ignore[arg-type]
        return writer.sent

    return asyncio.run(serve()).split(b"\r\n")[0]


def record(server: ExtProcServer) -> SessionRecord:
    found = server.runtime.sessions.get(SESSION)
    assert found is not None
    return found


def test_a_report_adds_its_counts_and_cost_to_the_session():
    """Two answers of claude-sonnet-4-5 ($3 in, $15 out): 12 in 6 out = $0.000126, then
    100 in 20 out = $0.0006; the session has cost $0.000726, its latest answer 100 in 20 out."""
    server = server_with_session()
    first = {"input_tokens": 12, "output_tokens": 6, "cost_usd": 0.000126}
    assert post(server, orjson.dumps(first)) == b"HTTP/1.1 200 OK"
    later = (
        b'{"input_tokens":100,"output_tokens":20,"cache_read_input_tokens":0,"cost_usd":0.00060000}'
    )
    assert post(server, later) == b"HTTP/1.1 200 OK"
    answered = record(server)
    assert (answered.input_tokens, answered.output_tokens) == (100, 20)
    assert answered.cost_usd == pytest.approx(0.000726, abs=1e-12)


def test_counts_without_a_price_leave_the_cost_alone():
    server = server_with_session()
    assert post(server, b'{"input_tokens":12,"output_tokens":6}') == b"HTTP/1.1 200 OK"
    assert (record(server).output_tokens, record(server).cost_usd) == (6, None)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[12, 6]",
        b'{"input_tokens": 12, "requests": 5}',
        b'{"input_tokens": -1}',
        b'{"input_tokens": 1.5}',
        b'{"input_tokens": true}',
        b'{"input_tokens": "12"}',
        b'{"cost_usd": "0.1"}',
        b'{"cost_usd": -0.1}',
        b'{"cost_usd": false}',
        b'{"cost_usd": 1e999}',
    ],
)
def test_anything_but_counts_and_a_cost_is_refused(body):
    server = server_with_session()
    assert post(server, body) == b"HTTP/1.1 400 Bad Request"
    assert (record(server).input_tokens, record(server).cost_usd) == (None, None)


def test_an_oversize_report_is_refused_unread():
    server = server_with_session()
    body = b'{"input_tokens": 12' + b" " * 500 + b"}"
    assert post(server, body) == b"HTTP/1.1 413 Content Too Large"
    assert record(server).input_tokens is None


def test_a_report_without_a_length_is_refused():
    server = server_with_session()
    raw_post = post(server, b"", **{"content-length": "twelve"})
    assert raw_post == b"HTTP/1.1 411 Length Required"


def test_a_report_for_an_unknown_session_keeps_nothing():
    server = server_with_session()
    body = b'{"input_tokens": 12, "cost_usd": 0.1}'
    assert post(server, body, session="another-session") == b"HTTP/1.1 404 Not Found"
    assert server.runtime.sessions.get("another-session") is None
    assert post(server, body, session="a/b") == b"HTTP/1.1 404 Not Found"


def test_with_a_sidecar_secret_only_a_report_that_carries_it_counts():
    server = server_with_session(SECRET)
    body = b'{"input_tokens": 12, "cost_usd": 0.1}'
    assert post(server, body) == b"HTTP/1.1 403 Forbidden"
    assert post(server, body, **{"x-extproc-secret": "wrong"}) == b"HTTP/1.1 403 Forbidden"
    assert record(server).cost_usd is None
    assert post(server, body, **{"x-extproc-secret": SECRET}) == b"HTTP/1.1 200 OK"
    assert record(server).cost_usd == 0.1


def test_a_report_of_every_count_and_no_cost_counts():
    """A local model's answer: all four counts, and a cost of $0."""
    server = server_with_session()
    every = {
        "input_tokens": 12,
        "output_tokens": 6,
        "cache_read_input_tokens": 300,
        "cache_creation_input_tokens": 40,
        "cost_usd": 0,
    }
    assert post(server, orjson.dumps(every)) == b"HTTP/1.1 200 OK"
    answered = record(server)
    assert (answered.input_tokens, answered.output_tokens, answered.cost_usd) == (12, 6, 0.0)


def test_a_report_without_a_count_leaves_the_one_shown():
    """usage.lua reports only the counts it found in the answer."""
    server = server_with_session()
    assert post(server, b'{"input_tokens":12,"output_tokens":6}') == b"HTTP/1.1 200 OK"
    assert post(server, b'{"output_tokens":9}') == b"HTTP/1.1 200 OK"
    assert (record(server).input_tokens, record(server).output_tokens) == (12, 9)
    assert post(server, b'{"input_tokens":30}') == b"HTTP/1.1 200 OK"
    assert (record(server).input_tokens, record(server).output_tokens) == (30, 9)
