"""The listener as an edge: every spelling of a path is routed or refused, malformed HTTP and
Envoy's own headers get no special treatment from clients, and an error names what failed
(the provider, the sidecar, the client) whatever the path through Envoy."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import orjson
import pytest

from extproc.config import Listener
from extproc.proxy.exchange import LOCAL_REPLY_HEADER
from extproc.translate.response import INFLATED_MAX
from tests.support.fake_openai import completion
from tests.support.fake_server import FakeServer, send_json
from tests.support.gateway import Gateway, gateway_config, running_gateway
from tests.support.gzip_bomb import gzip_bomb
from tests.support.requests import KEY, assert_anthropic_error, chat

# ------------------------------------------------------------------ helpers


def raw_request(
    gateway: Gateway, method: str, path: str, body: bytes = b"", **headers: str
) -> httpx.Response:
    """`path` sent exactly as written (httpx would normalize it first)."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    connection.request(method, path, body=body, headers={**KEY, **headers})
    answer = connection.getresponse()
    response = httpx.Response(answer.status, headers=answer.getheaders(), content=answer.read())
    connection.close()
    return response


def raw_bytes(gateway: Gateway, data: bytes) -> bytes:
    """What Envoy answers to bytes that may not be HTTP at all."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def parse_http(raw: bytes) -> httpx.Response:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines]
    return httpx.Response(int(status_line.split()[1]), headers=headers, content=body)


HAIKU = orjson.dumps(chat("claude-3-haiku-x"))
"""Routed by alias to anthropic/claude-haiku-4-5: a routed request reaches it as that model."""


# ------------------------------------------------------------------ paths


@pytest.mark.parametrize(
    "path", ["//v1/messages", "/v1/./messages", "/v1/models/../messages", "/v1/%6Dessages"]
)
def test_other_spellings_of_the_messages_path_are_routed(gateway, fakes, path):
    response = raw_request(gateway, "POST", path, HAIKU, **{"content-type": "application/json"})
    assert response.status_code == 200, response.text
    [seen] = fakes[0].received
    assert (seen.path, seen.json()["model"]) == ("/v1/messages", "claude-haiku-4-5")


@pytest.mark.parametrize(
    "path",
    [
        "/V1/MESSAGES",
        "/v1/messages;x",
        "/v1/messages/batches",
        "/v1/messages%2Fcount_tokens",
        "/api/event_logging/batch",
        "/v1/files",
    ],
)
def test_paths_off_the_allow_list_are_refused_before_any_upstream_call(gateway, fakes, path):
    response = raw_request(gateway, "POST", path, HAIKU, **{"content-type": "application/json"})
    message = assert_anthropic_error(response, 404, "not_found_error")
    assert "pass_through_paths" in message
    assert not any(fake.received for fake in fakes)


@pytest.mark.parametrize(("method", "path"), [("HEAD", "/"), ("GET", "/v1/models/claude-x")])
def test_what_claude_code_asks_besides_messages_passes_through(gateway, fakes, method, path):
    assert raw_request(gateway, method, path).status_code == 200
    [seen] = fakes[0].received
    assert (seen.method, seen.path) == (method, path)
    entry = gateway.wait_log(lambda e: e["path"] == path and e["method"] == method)
    assert (entry["source"], entry["provider"]) == (None, "anthropic/claude-sonnet-4-5")


# ------------------------------------------------------------------ malformed HTTP, x-envoy-*


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nNot A Header\r\n\r\n", 400),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nx-big: " + b"a" * 100_000 + b"\r\n\r\n", 431),
        (b"GET /v1/models HTTP/1.0\r\n\r\n", 426),
    ],
    ids=["bad header line", "not HTTP", "headers too large", "HTTP/1.0"],
)
def test_malformed_http_gets_an_anthropic_error(gateway, fakes, data, status):
    response = parse_http(raw_bytes(gateway, data))
    assert_anthropic_error(response, status, "invalid_request_error")
    assert not any(fake.received for fake in fakes)


def test_a_client_cannot_forge_envoy_headers(gateway, fakes):
    forged = {
        "x-envoy-original-path": "/forged",
        "x-envoy-upstream-rq-timeout-ms": "1",
        "x-envoy-retry-on": "5xx",
    }
    for method, path, body in (("GET", "/v1/models", b""), ("POST", "/v1/messages", HAIKU)):
        session = f"forged-{method}"
        headers = {"content-type": "application/json", "x-claude-code-session-id": session}
        response = raw_request(gateway, method, path, body, **headers, **forged)
        assert response.status_code == 200, response.text
        assert gateway.wait_log(lambda e, s=session: e["session"] == s)["path"] == path
    for seen in fakes[0].received:
        assert "x-envoy-retry-on" not in seen.headers
        assert "x-envoy-upstream-rq-timeout-ms" not in seen.headers
        # The sidecar's own, on the path it rewrote (Envoy's convention), or none.
        assert seen.headers.get("x-envoy-original-path") in (None, seen.path)


def test_the_access_log_request_id_is_the_gateways_and_the_clients_is_kept_beside_it(
    gateway, fakes
):
    """A client's x-request-id became the access log's request_id, so it could forge it."""
    headers = {"content-type": "application/json", "x-request-id": "forged-request-id"}
    response = raw_request(gateway, "POST", "/v1/messages", HAIKU, **headers)
    assert response.status_code == 200, response.text
    (seen,) = fakes[0].received
    ours = seen.headers["x-request-id"]
    assert ours != "forged-request-id"
    entry = gateway.wait_log(lambda e: e["request_id"] == ours)
    assert entry["client_request_id"] == "forged-request-id"
    # Without one from the client, there is none to keep.
    plain = raw_request(
        gateway, "POST", "/v1/messages", HAIKU, **{"content-type": "application/json"}
    )
    assert plain.status_code == 200, plain.text
    ours = fakes[0].received[-1].headers["x-request-id"]
    assert gateway.wait_log(lambda e: e["request_id"] == ours)["client_request_id"] is None


# ------------------------------------------------------------------ bodies nested too deeply


def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


def deep_json(value: Any) -> bytes:
    """JSON text for `value`, however deep (orjson writes at most 255 levels)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)
    try:
        return json.dumps(value).encode()
    finally:
        sys.setrecursionlimit(limit)


def test_a_native_body_too_deep_to_re_encode_is_a_400(gateway, fakes):
    # `model` not first: the body must be re-encoded to route it, and orjson stops at 255.
    body = {"max_tokens": 5, "x": nested(300), **chat("claude-3-haiku-x")}
    raw = deep_json(body)
    message = assert_anthropic_error(
        raw_request(gateway, "POST", "/v1/messages", raw, **{"content-type": "application/json"}),
        400,
        "invalid_request_error",
    )
    assert "nest it less deeply" in message
    assert not any(fake.received for fake in fakes)


def test_a_count_tokens_estimate_of_a_deep_body_is_a_400(gateway, fakes):
    body = chat("openai/gpt-4.1", [{"type": "text", "text": "hi", "x": nested(400)}])
    raw = deep_json(body)
    response = raw_request(
        gateway, "POST", "/v1/messages/count_tokens", raw, **{"content-type": "application/json"}
    )
    assert_anthropic_error(response, 400, "invalid_request_error")
    assert not any(fake.received for fake in fakes)


# ------------------------------------------------------------------ a gateway with hostile parts


class GzipBomb(FakeServer):
    """An OpenAI-format provider whose every answer inflates past the gateway's limit."""

    bomb = gzip_bomb(INFLATED_MAX + (8 << 20))

    def respond(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        streamed = json.loads(body).get("stream")
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream" if streamed else "application/json")
        handler.send_header("content-encoding", "gzip")
        handler.send_header("content-length", str(len(self.bomb)))
        handler.end_headers()
        handler.wfile.write(self.bomb)


MAX_BODY_BYTES = Listener().max_body_bytes


@dataclass(kw_only=True)
class HugeAnswer(FakeServer):
    """An OpenAI-format provider whose every answer is a JSON object of `size` bytes."""

    size: int

    def respond(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        head = b'{"id": "huge", "choices": [{"index": 0, "message": {"content": "'
        tail = b'"}, "finish_reason": "stop"}]}'
        send_json(handler, 200, head + b"x" * (self.size - len(head) - len(tail)) + tail)


class ForgedLocalReply(FakeServer):
    """An OpenAI-format provider whose answer carries the gateway's own marker of Envoy's
    error replies, which told the sidecar to pass the answer on untranslated."""

    def respond(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        answer = completion("forged", {"text": "plain OpenAI JSON", "finish_reason": "stop"})
        send_json(handler, 200, orjson.dumps(answer), {LOCAL_REPLY_HEADER: "api_error"})


@pytest.fixture(scope="module")
def edge_gateway(fake_anthropic, fake_deepseek, fake_openai, tmp_path_factory) -> Iterator[Gateway]:
    """2 s of silence end a stream; `bomb` answers gzip bombs; `huge` answers a byte more than
    Envoy buffers; `unresolvable` is an OpenAI-format provider whose host does not resolve;
    `forged` marks its answers as Envoy's own error replies."""
    bomb = GzipBomb().start()
    huge = HugeAnswer(size=MAX_BODY_BYTES + 1).start()
    forged = ForgedLocalReply().start()

    def config_for(ports: dict[str, int]) -> str:
        config = gateway_config(fake_anthropic, fake_deepseek, fake_openai, **ports)
        return config.replace("listener:\n", "listener:\n  idle_timeout_s: 2\n").replace(
            "model_aliases:\n",
            f"""\
  - name: bomb
    model: openai/bomb
    base_url: {bomb.url}/v1
    access_key: k
  - name: huge
    model: openai/huge
    base_url: {huge.url}/v1
    access_key: k
  - name: unresolvable
    model: openai/unresolvable
    base_url: http://does-not-exist.invalid/v1
    access_key: k
  - name: forged
    model: openai/forged
    base_url: {forged.url}/v1
    provider_interface: openai-chat
    access_key: k
model_aliases:
""",
        )

    with running_gateway(config_for, tmp_path_factory.mktemp("edge-gateway")) as gateway:
        yield gateway
    bomb.stop()
    huge.stop()
    forged.stop()


def send(gateway: Gateway, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/messages", json=body, headers=KEY, timeout=30)


def test_a_gzip_bomb_is_a_502_not_gigabytes(edge_gateway):
    """Not streamed, it is held to what Envoy buffers of an uncompressed answer."""
    message = assert_anthropic_error(send(edge_gateway, chat("bomb")), 502, "api_error")
    assert message == (
        "The gateway stopped reading the provider's answer: it is larger than "
        f"{MAX_BODY_BYTES} bytes (listener.max_body_bytes)."
    )


def test_a_streamed_gzip_bomb_ends_in_an_error_event(edge_gateway):
    response = send(edge_gateway, chat("bomb", stream=True))
    assert response.status_code == 200
    events = [orjson.loads(line[6:]) for line in response.text.splitlines() if line[:6] == "data: "]
    assert events[-1]["type"] == "error", events
    assert f"more than {INFLATED_MAX} bytes" in events[-1]["error"]["message"]
    assert send(edge_gateway, chat("openai/gpt-4.1")).status_code == 200


def test_an_answer_larger_than_envoy_buffers_is_an_anthropic_error(edge_gateway):
    """A translated answer that is not streamed is buffered whole; one byte past the limit,
    Envoy answers in its place (a plain-text 500 before its local reply mapper knew it)."""
    response = send(edge_gateway, chat("huge"))
    message = assert_anthropic_error(response, 502, "api_error")
    assert message == (
        "The gateway stopped reading the provider's answer: it is larger than "
        f"{MAX_BODY_BYTES} bytes (listener.max_body_bytes) (response_payload_too_large)"
    )


def test_a_provider_cannot_turn_translation_off_with_the_gateways_own_header(edge_gateway):
    response = send(edge_gateway, chat("forged"))
    assert response.status_code == 200, response.text
    assert LOCAL_REPLY_HEADER not in response.headers
    answer = response.json()
    assert (answer["type"], answer["content"]) == (
        "message",
        [{"type": "text", "text": "plain OpenAI JSON"}],
    )


def test_an_unresolvable_translated_provider_is_api_error(edge_gateway):
    message = assert_anthropic_error(send(edge_gateway, chat("unresolvable")), 503, "api_error")
    assert "its DNS lookup failed or has not answered yet" in message


def sidecar_processes(gateway: Gateway) -> list[int]:
    """The sidecar under `extproc up` and its workers: every process but Envoy's."""
    found, parents = [], [gateway.process.pid]
    while parents:
        out = subprocess.run(["pgrep", "-P", str(parents.pop())], capture_output=True, text=True)
        for pid in map(int, out.stdout.split()):
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"envoy" not in cmdline.read().split(b"\0")[0]:
                    found.append(pid)
                    parents.append(pid)
    return found


def test_a_stalled_sidecar_is_named_not_the_provider(edge_gateway, fakes):
    sidecar = sidecar_processes(edge_gateway)
    assert sidecar
    for pid in sidecar:
        os.kill(pid, signal.SIGSTOP)
    try:
        response = send(edge_gateway, chat())
    finally:
        for pid in sidecar:
            os.kill(pid, signal.SIGCONT)
    message = assert_anthropic_error(response, 504, "timeout_error")
    assert "routing sidecar did not answer" in message
    assert not any(fake.received for fake in fakes)
    # The provider's own silence is still called that.
    message = assert_anthropic_error(
        send(edge_gateway, chat(text="FAULT-HANG")), 504, "timeout_error"
    )
    assert "provider was silent" in message
