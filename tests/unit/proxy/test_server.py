"""The sidecar's health port as a load balancer, `extproc up` and `extproc claude` read it, and
the secret that keeps other local processes off its gRPC port. Streams through Envoy are
tests/e2e/test_server.py's."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

import grpc
import orjson
import pytest
from envoy_data_plane.envoy.service.ext_proc.v3 import (
    HttpBody,
    ProcessingRequest,
    ProcessingResponse,
)
from envoy_data_plane.google.protobuf import Struct

from extproc.app import build_runtime
from extproc.config import parse
from extproc.decisions.routing import RouterStage
from extproc.providers import credentials
from extproc.proxy.exchange import Exchange
from extproc.proxy.server import ExtProcServer, envoy_state, presents, serve_until_signalled
from tests.support.ext_proc import METHOD, headers_message
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
    async with asyncio.timeout(10):  # a health port that never answers fails, not hangs
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
    """A started server, not ready yet (its `ready` is a flag to set), its health port, and
    the Envoy beside it (as under `extproc up`), serving."""
    config = parse(CONFIG, "config.yaml")
    flag = {"ready": False}
    envoy = FakeEnvoyReady().start()
    runtime = build_runtime(config, RouterStage(config.routing))
    admin = f"127.0.0.1:{envoy.port}"
    server = ExtProcServer(runtime, ready=lambda: flag["ready"], envoy_admin=admin)
    port = free_port()
    await server.start("127.0.0.1", free_port(), port, max_body=1 << 20)
    yield server, port, flag, envoy
    await server.stop(0)
    envoy.stop()


async def test_each_path_of_the_health_port(health):
    server, port, *_ = health
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
    _, port, *_ = health
    status, _, body = await ask(port, b"GET /" + b"a" * 70_000 + b" HTTP/1.1")
    assert (status, body) == (b"HTTP/1.1 414 URI Too Long", b"request line too long\n")


async def test_ready_once_the_router_is_and_with_envoy_when_up_runs_it(health):
    server, port, flag, envoy = health
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
    envoy.state = "PRE_INITIALIZING"
    status, _, body = await ask(port, b"GET /ready HTTP/1.1")
    assert (status, body) == (
        b"HTTP/1.1 503 Service Unavailable",
        b"not ready: envoy PRE_INITIALIZING\n",
    )
    # /ready/sidecar is the sidecar alone: what `extproc up` waits for before Envoy starts.
    assert (await ask(port, b"GET /ready/sidecar HTTP/1.1"))[2] == b"ok\n"
    envoy.stop()
    assert (await ask(port, b"GET /ready HTTP/1.1"))[2] == (
        f"not ready: envoy does not answer on 127.0.0.1:{envoy.port}\n".encode()
    )
    server.envoy_admin = None  # `extproc serve` alone: the sidecar is all there is
    assert (await ask(port, b"GET /ready HTTP/1.1"))[2] == b"ok\n"


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


SECRET = "s3cret-for-this-test"
MAX_BODY = 5 * 1024 * 1024
"""Past gRPC's default limit on a received message (4 MiB)."""


@pytest.fixture
async def grpc_port():
    """A started server with a secret, taking bodies up to MAX_BODY; its gRPC port."""
    text = (
        "llm_providers:\n  - model: openai/gpt-4.1\n    access_key: sk-unit\n"
        f"listener:\n  max_body_bytes: {MAX_BODY}\n"
    )
    config = dataclasses.replace(parse(text, "config.yaml"), sidecar_secret=SECRET)
    server = ExtProcServer(build_runtime(config, RouterStage(config.routing)))
    port = free_port()
    await server.start("127.0.0.1", port, free_port(), max_body=MAX_BODY)
    yield port
    await server.stop(0)


async def call(port: int, messages: list, metadata: tuple = ()) -> list[ProcessingResponse]:
    options = [("grpc.max_receive_message_length", -1)]  # a reply carries the body back
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        process = channel.stream_stream(
            METHOD, request_serializer=bytes, response_deserializer=ProcessingResponse.parse
        )
        return [reply async for reply in process(iter(messages), metadata=metadata, timeout=10)]


@pytest.mark.parametrize("metadata", [(), (("x-extproc-secret", "guessed"),)])
async def test_a_stream_without_the_secret_is_refused(grpc_port, metadata, caplog):
    with pytest.raises(grpc.RpcError) as refused:
        # Before any message: the check is on the stream's metadata (a message sent while
        # the refusal comes back would fail on the client's side first).
        await call(grpc_port, [], metadata)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.details() == (
        "the ext_proc stream lacks the sidecar's secret (x-extproc-secret)"
    )
    [said] = [r.getMessage() for r in caplog.records if r.name == "extproc"]
    assert re.fullmatch(
        r"refused an ext_proc stream from ipv4:127\.0\.0\.1:\d+: no or wrong secret", said
    )


async def test_a_body_at_the_limit_is_taken_and_routed(grpc_port):
    """Envoy sends a body of up to `listener.max_body_bytes` in one gRPC message."""
    text = "x" * (MAX_BODY - 200)
    request = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": text}]}
    body = orjson.dumps(request)
    assert MAX_BODY - 200 < len(body) <= MAX_BODY
    messages = [
        headers_message("/v1/messages", {"content-length": str(len(body))}),
        ProcessingRequest(request_body=HttpBody(body=body, end_of_stream=True)),
    ]
    on_headers, on_body = await call(grpc_port, messages, (("x-extproc-secret", SECRET),))
    assert on_headers.request_headers is not None
    mutation = on_body.request_body.response.header_mutation
    routed = {o.header.key: o.header.raw_value.decode() for o in mutation.set_headers}
    assert routed["x-extproc-cluster"] == "api_openai_com_443"


async def test_a_taken_port_is_refused_and_a_stopped_server_frees_its_ports(caplog):
    config = parse(CONFIG, "config.yaml")
    first = ExtProcServer(build_runtime(config, RouterStage(config.routing)))
    second = ExtProcServer(build_runtime(config, RouterStage(config.routing)))
    port, health = free_port(), free_port()
    caplog.set_level(logging.INFO, logger="extproc")
    try:
        await first.start("127.0.0.1", port, health, max_body=1 << 20)
        listening = f"ext_proc listening on 127.0.0.1:{port}, health on 127.0.0.1:{health}"
        assert caplog.messages == [listening]
        # Without reuse_port (`--workers`) a taken port is refused, in the project's words
        # (what `extproc serve` prints), not grpcio's "Failed to bind to address".
        with pytest.raises(OSError) as refused:
            await second.start("127.0.0.1", port, free_port(), max_body=1 << 20)
        assert str(refused.value) == (
            f"cannot listen on 127.0.0.1:{port} for ext_proc (port taken, or not an address "
            "of this machine? sidecar.listen_address is what serve binds)"
        )
        await first.stop(0)
        await second.start("127.0.0.1", port, health, max_body=1 << 20)
    finally:
        await first.stop(0)
        await second.stop(0)


async def test_the_health_port_listens_where_it_is_told():
    """On `sidecar.health_address`, else where the gRPC port does: not on every address."""
    config = parse(CONFIG, "config.yaml")
    server = ExtProcServer(build_runtime(config, RouterStage(config.routing)))
    health = free_port()
    await server.start("127.0.0.1", free_port(), health, max_body=1 << 20)
    try:
        assert (await ask(health, b"GET /healthz HTTP/1.1"))[2] == b"ok\n"
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.2", health)  # loopback, another address
    finally:
        await server.stop(0)


async def test_four_bodies_at_the_limit_are_read_at_once_and_a_fifth_waits():
    config = parse(CONFIG, "config.yaml")
    server = ExtProcServer(build_runtime(config, RouterStage(config.routing)))
    limit = config.listener.max_body_bytes
    async with asyncio.timeout(5):  # a budget too small fails here rather than hanging
        held = [await server.bodies.take(limit) for _ in range(4)]
    assert held == [limit] * 4
    fifth = asyncio.ensure_future(server.bodies.take(limit))
    await asyncio.sleep(0)
    assert not fifth.done()
    server.bodies.give(limit)
    assert await fifth == limit


class FakeGrpcServer:
    """grpc.aio.Server's `stop`, which drains open streams for `grace` seconds (None: none)."""

    def __init__(self) -> None:
        self.stopped_with: list[float | None] = []

    async def stop(self, grace: float | None) -> None:
        self.stopped_with.append(grace)


@pytest.mark.parametrize(
    ("grace", "said"),
    [
        (0, "stopping now; open streams are cut"),
        (0.6, "draining open streams for up to 1s"),
        (30, "draining open streams for up to 30s"),
    ],
)
async def test_stop_drains_for_its_grace_and_says_so(caplog, grace, said):
    config = parse(CONFIG, "config.yaml")
    server = ExtProcServer(build_runtime(config, RouterStage(config.routing)))
    server._grpc = fake = FakeGrpcServer()
    caplog.set_level(logging.INFO, logger="extproc")
    await server.stop(grace)
    assert fake.stopped_with == [grace]
    assert caplog.messages == [said]


@pytest.fixture
async def failing_port():
    """A started server whose one provider's key is unset, writing under namespace acme.gw."""
    text = CONFIG + "sidecar: {metadata_namespace: acme.gw}\n"
    config = parse(text, "config.yaml")
    server = ExtProcServer(build_runtime(config, RouterStage(config.routing)))
    port = free_port()
    await server.start("127.0.0.1", port, free_port(), max_body=1 << 20)
    yield server, port
    await server.stop(0)


def answer_of(reply: ProcessingResponse) -> tuple[int, str, dict, dict]:
    """An immediate reply's status, details, Anthropic error and access-log fields."""
    answer = reply.immediate_response
    fields = reply.dynamic_metadata.fields["acme.gw"].struct_value.fields
    logged = {k: v.string_value for k, v in fields.items()}
    return answer.status.code, answer.details, orjson.loads(answer.body)["error"], logged


def rejected(status: int, error_type: str, message: str) -> tuple[int, str, dict, dict]:
    """`answer_of` a request refused before any decision."""
    error = {"type": error_type, "message": message}
    return status, f"extproc_{error_type}", error, {"source": "rejected", "note": message}


BODY = orjson.dumps(
    {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
)


async def test_a_refused_request_is_answered_with_its_error_and_ends_the_stream(failing_port):
    get = headers_message("/v1/messages", {":method": "GET"})
    body = ProcessingRequest(request_body=HttpBody(body=BODY, end_of_stream=True))
    [reply] = await call(failing_port[1], [get, body])  # nothing more is read
    assert answer_of(reply) == rejected(400, "invalid_request_error", "/v1/messages takes POST")


async def test_a_request_refused_after_its_decision_keeps_the_decision(failing_port):
    messages = [
        headers_message("/v1/messages", {"content-length": str(len(BODY))}),
        ProcessingRequest(request_body=HttpBody(body=BODY, end_of_stream=True)),
    ]
    server, port = failing_port
    _, reply = await call(port, messages)
    assert server.bodies.free == server.bodies.total  # the body's share given back
    status, details, error, logged = answer_of(reply)
    message = (
        "The gateway routed this request to openai/gpt-4.1, but its access_key names "
        "$NO_SUCH_KEY_SET, which is not set where the sidecar runs."
    )
    assert (status, details, error) == (
        401,
        "extproc_authentication_error",
        {"type": "authentication_error", "message": message},
    )
    assert (logged["source"], logged["provider"], logged["note"]) == (
        "default",
        "openai/gpt-4.1",
        message,
    )


async def test_a_failure_inside_the_gateway_is_a_500_api_error(failing_port, monkeypatch, caplog):
    async def broken(self, raw):
        raise RuntimeError("a bug")

    monkeypatch.setattr(Exchange, "on_request_body", broken)
    messages = [
        headers_message("/v1/messages", {"content-length": str(len(BODY))}),
        ProcessingRequest(request_body=HttpBody(body=BODY, end_of_stream=True)),
        ProcessingRequest(request_body=HttpBody(body=BODY, end_of_stream=True)),
    ]
    server, port = failing_port
    _, reply = await call(port, messages)  # the stream ends with it: no third reply
    assert server.bodies.free == server.bodies.total
    message = "The gateway failed to process this request."
    assert answer_of(reply) == rejected(500, "api_error", message)
    assert [r.getMessage() for r in caplog.records if r.exc_info] == [
        "error while processing /v1/messages"
    ]


def test_a_body_takes_its_declared_size_from_the_budget_or_the_limit_when_unknown():
    config = parse(CONFIG, "config.yaml")
    server = ExtProcServer(build_runtime(config, RouterStage(config.routing)))
    limit = config.listener.max_body_bytes
    assert server._body_size({"content-length": "1234"}) == 1234
    assert server._body_size({}) == limit  # chunked
    assert server._body_size({"content-length": "-5"}) == limit


async def test_a_body_waits_for_room_in_the_budget_and_its_headers_do_not(failing_port):
    """The budget is taken for a body once its headers are answered, before it is read."""
    server, port = failing_port
    held = await server.bodies.take(server.bodies.total)  # other streams' bodies fill it
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stream = channel.stream_stream(
            METHOD, request_serializer=bytes, response_deserializer=ProcessingResponse.parse
        )(timeout=10)
        async with asyncio.timeout(5):  # headers waiting for the budget fail here
            length = {"content-length": str(len(BODY))}
            await stream.write(headers_message("/v1/messages", length))
            on_headers = await stream.read()
        assert on_headers.request_headers is not None
        await stream.write(ProcessingRequest(request_body=HttpBody(body=BODY, end_of_stream=True)))
        answer = asyncio.ensure_future(stream.read())
        server.bodies.give(held)
        assert (await answer).immediate_response.status.code == 401
        await stream.done_writing()
    assert server.bodies.free == server.bodies.total


class FakeContext:
    """What `process` uses of a gRPC stream's context, for a stream driven without gRPC."""

    def invocation_metadata(self) -> tuple:
        return ()

    def peer(self) -> str:
        return "ipv4:127.0.0.1:40000"


async def through(server: ExtProcServer, messages: list) -> list[ProcessingResponse]:
    """`messages` as one stream through `server.process`, without gRPC; its replies."""

    async def requests():
        for message in messages:
            yield bytes(message)

    return [
        ProcessingResponse.parse(reply)
        async for reply in server.process(requests(), FakeContext())  # type: ignore[arg-type]
    ]


async def stream(server: ExtProcServer, body_size: int | None) -> None:
    """A request refused after its body, which declares and has `body_size` bytes (None: a
    GET, refused on its headers, with no body)."""
    if body_size is None:
        messages = [headers_message("/v1/messages", {":method": "GET"})]
    else:
        pad = "x" * (body_size - len(BODY) - len(',"pad":""'))
        body = BODY[:-1] + f',"pad":"{pad}"}}'.encode()
        assert len(body) == body_size
        messages = [
            headers_message("/v1/messages", {"content-length": str(body_size)}),
            ProcessingRequest(request_body=HttpBody(body=body, end_of_stream=True)),
        ]
    replies = await through(server, messages)
    assert replies[-1].immediate_response.status.code in (400, 401)


@dataclass
class Trims:
    """The heap trims a server leaves on the event loop for later, and those done."""

    scheduled: list[tuple[float, object]] = dataclasses.field(default_factory=list)
    done: int = 0


@pytest.fixture
async def trims(monkeypatch):
    """Trims scheduled by a server are recorded, not run: the test runs them when it likes."""
    trims = Trims()
    loop = asyncio.get_running_loop()
    real = loop.call_later

    def call_later(delay, callback, *args):
        if callback is None or isinstance(getattr(callback, "__self__", None), ExtProcServer):
            trims.scheduled.append((delay, callback))
            return None
        return real(delay, callback, *args)

    monkeypatch.setattr(loop, "call_later", call_later)

    def release() -> None:
        trims.done += 1

    monkeypatch.setattr("extproc.proxy.server.release_freed_memory", release)
    yield trims


def unkeyed_server() -> ExtProcServer:
    config = parse(CONFIG, "config.yaml")
    return ExtProcServer(build_runtime(config, RouterStage(config.routing)))


async def test_the_heap_is_trimmed_a_second_after_the_last_large_body(trims):
    """A body of RELEASE_AFTER_BYTES (1 MiB) or more: once every body is done and a second has
    let gRPC free its buffers, the heap's free pages go back to the system."""
    server = unkeyed_server()
    await stream(server, 1024 * 1024)
    assert trims.scheduled == [(1.0, server._release_if_idle)]
    trims.scheduled[0][1]()  # a second later, nothing else in: trimmed
    assert trims.done == 1


async def test_small_bodies_and_requests_without_one_leave_the_heap_alone(trims):
    server = unkeyed_server()
    await stream(server, 1024 * 1024 - 1)
    await stream(server, None)
    assert trims.scheduled == []


async def test_no_trim_while_other_bodies_are_in(trims):
    server = unkeyed_server()
    other = await server.bodies.take(10)  # another stream's body, still being read
    await stream(server, 2 * 1024 * 1024)
    assert trims.scheduled == []  # that stream trims when it is done, if it was large
    server.bodies.give(other)
    await stream(server, 2 * 1024 * 1024)
    [(_, trim)] = trims.scheduled
    other = await server.bodies.take(10)  # a body came in within the second: not now
    trim()
    assert trims.done == 0
    server.bodies.give(other)
    trim()
    assert trims.done == 1


def said(caplog) -> list[str]:
    """The sidecar's log lines, with whether each carries a traceback."""
    return [f"{r.getMessage()}{' (traceback)' if r.exc_info else ''}" for r in caplog.records]


async def test_a_refusal_is_logged_with_its_path_or_a_dash_before_one_is_known(caplog):
    server = unkeyed_server()
    await stream(server, None)  # GET /v1/messages
    body_first = ProcessingRequest(request_body=HttpBody(body=BODY, end_of_stream=True))
    [reply] = await through(server, [body_first])
    assert reply.immediate_response.status.code == 500
    assert said(caplog) == [
        "/v1/messages invalid_request_error: /v1/messages takes POST",
        "- api_error: ext_proc request_body came before the request's headers",
    ]


async def test_a_failure_before_the_path_is_known_names_a_request(caplog, monkeypatch):
    def broken(self, headers, end_of_stream):
        raise RuntimeError("a bug")

    monkeypatch.setattr(Exchange, "on_request_headers", broken)
    [reply] = await through(unkeyed_server(), [headers_message("/v1/messages")])
    assert reply.immediate_response.status.code == 500
    assert said(caplog) == ["error while processing a request (traceback)"]


async def test_a_failover_attempts_stream_is_the_attempts(caplog):
    """Envoy names a `fo__` slot in the first message's attributes: the stream is an attempt
    of a failover chain (`attempt.Attempt`), whose headers name its candidate."""
    first = headers_message("/v1/messages")
    slot = Struct.from_dict({"xds.cluster_name": "fo__nowhere"})
    first.attributes = {"envoy.filters.http.ext_proc": slot}
    [reply] = await through(unkeyed_server(), [first])
    assert reply.immediate_response.status.code == 500
    assert said(caplog) == ["- api_error: no provider entry for failover slot fo__nowhere"]


@pytest.mark.parametrize(
    ("first", "then", "said"),
    [
        (signal.SIGTERM, signal.SIGINT, "draining open streams for up to 30s"),
        (signal.SIGINT, signal.SIGTERM, "stopping now; open streams are cut"),
    ],
)
async def test_sigterm_drains_ctrl_c_stops_at_once_and_sighup_reloads(
    monkeypatch, caplog, first, then, said
):
    """`extproc serve`'s signals, through the handlers it sets on the event loop (recorded
    here, not set on this process). The first of SIGTERM and SIGINT decides."""
    handlers: dict[int, Callable[[], object]] = {}
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(
        loop, "add_signal_handler", lambda s, handler: handlers.update({s: handler})
    )
    server = unkeyed_server()
    server._grpc = fake = FakeGrpcServer()
    reloads: list[str] = []
    caplog.set_level(logging.INFO, logger="extproc")
    serving = asyncio.ensure_future(
        serve_until_signalled(server, 30, on_reload=lambda: reloads.append("reload"))
    )
    await asyncio.sleep(0)
    assert sorted(handlers) == [signal.SIGHUP, signal.SIGINT, signal.SIGTERM]
    handlers[signal.SIGHUP]()
    assert reloads == ["reload"]
    handlers[first]()
    handlers[then]()
    async with asyncio.timeout(5):  # a signal that stops nothing fails here
        await serving
    assert fake.stopped_with == [30 if first == signal.SIGTERM else 0]
    assert caplog.messages == [said, "stopped"]


async def test_without_a_reload_sighup_is_left_alone(monkeypatch):
    handlers: dict[int, Callable[[], object]] = {}
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(
        loop, "add_signal_handler", lambda s, handler: handlers.update({s: handler})
    )
    server = unkeyed_server()
    server._grpc = FakeGrpcServer()
    serving = asyncio.ensure_future(serve_until_signalled(server, 30))
    await asyncio.sleep(0)
    assert sorted(handlers) == [signal.SIGINT, signal.SIGTERM]
    handlers[signal.SIGINT]()
    async with asyncio.timeout(5):
        await serving
