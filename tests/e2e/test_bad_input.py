"""Bad input: every malformed, mistyped, oversized or hostile request gets an Anthropic-format
error (or a normal answer), never a crash, a hang or a plain-text reply; the gateway keeps
serving afterwards."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import httpx
import orjson
import pytest
from envoy_data_plane.envoy.config.core.v3 import HeaderMap, HeaderValue
from envoy_data_plane.envoy.service.ext_proc.v3 import (
    HttpBody,
    HttpHeaders,
    ProcessingRequest,
    ProcessingResponse,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc.app import build_runtime
from extproc.config import parse
from extproc.config.contract import Contract
from extproc.decisions.routing import RouterStage
from extproc.errors import GatewayError
from extproc.proxy.exchange import Exchange
from extproc.proxy.wire import decode_request
from extproc.translate.anthropic_format import TranslationError
from extproc.translate.openai_chat import StreamTranslator, translate_request, translate_response
from extproc.translate.sse import SSEParser
from tests.support.gateway import STRICT_MAX_BODY
from tests.support.requests import KEY, assert_anthropic_error, chat

JSON_TYPE = {"content-type": "application/json"}


def post(gateway, content: bytes, path: str = "/v1/messages", **headers: str) -> httpx.Response:
    return httpx.post(
        gateway.url + path, content=content, headers={**KEY, **JSON_TYPE, **headers}, timeout=30
    )


BAD_BODIES = {
    "truncated JSON": (b'{"model": "x", ', "not valid JSON"),
    "not UTF-8": (b'{"model": "claude-sonnet-4-5", "messages": ["\xff\xfe"]}', "not valid JSON"),
    "lone surrogate": (b'{"model": "\\ud800", "messages": []}', "not valid JSON"),
    "100k levels of [": (b"[" * 100_000, "JSON object"),
    "100k levels of {": (b'{"a":' * 100_000, "not valid JSON"),
    "array": (b"[1, 2]", "JSON object"),
    "model a number": (b'{"model": 42, "messages": []}', "model"),
    "model null": (b'{"model": null, "messages": []}', "model"),
    "model empty": (b'{"model": "", "messages": []}', "model"),
    "messages a string": (b'{"model": "claude-sonnet-4-5", "messages": "hi"}', "messages"),
    "messages an object": (b'{"model": "openai/gpt-4.1", "messages": {}}', "messages"),
    "empty body": (b" ", "not valid JSON"),
}


@pytest.mark.parametrize("case", BAD_BODIES)
def test_bad_bodies_get_anthropic_errors_before_any_upstream_call(gateway, fakes, case):
    body, words = BAD_BODIES[case]
    message = assert_anthropic_error(post(gateway, body), 400, "invalid_request_error")
    assert words in message
    assert not any(fake.received for fake in fakes)


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"content-type": "text/plain"}, "content-type"),
        ({"content-type": "application/x-www-form-urlencoded"}, "content-type"),
        ({"content-encoding": "gzip"}, "Content-Encoding"),
        ({"content-encoding": "br"}, "Content-Encoding"),
    ],
)
def test_wrong_content_type_or_compressed_body_is_415(gateway, fakes, headers, words):
    body = orjson.dumps(chat())
    if headers.get("content-encoding") == "gzip":
        body = gzip.compress(body)
    message = assert_anthropic_error(post(gateway, body, **headers), 415, "invalid_request_error")
    assert words in message
    assert not any(fake.received for fake in fakes)


def test_json_with_charset_parameter_is_fine(gateway, fakes):
    response = post(
        gateway, orjson.dumps(chat()), **{"content-type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 200


def test_body_over_the_limit_is_413_in_anthropic_format(strict_gateway, fakes):
    body = orjson.dumps(chat(text="x" * STRICT_MAX_BODY))
    message = assert_anthropic_error(post(strict_gateway, body), 413, "request_too_large")
    assert f"{STRICT_MAX_BODY} bytes" in message and "listener.max_body_bytes" in message
    assert not any(fake.received for fake in fakes)
    # The connection and the gateway are fine afterwards.
    assert post(strict_gateway, orjson.dumps(chat())).status_code == 200


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "openai/gpt-4.1"])
def test_a_10_mb_message_under_the_default_limit_goes_through_whole(gateway, fakes, model):
    text = "the quick brown fox ✓ " * (10 * 1024 * 1024 // 24)
    response = post(gateway, orjson.dumps(chat(model, text)))
    assert response.status_code == 200, response.text[:300]
    [seen] = [r for fake in fakes for r in fake.received]
    assert seen.json()["messages"][-1]["content"] == text


def test_unknown_path_is_404_before_any_upstream_call(gateway, fakes):
    response = httpx.get(f"{gateway.url}/v1/no-such-thing?x=1", headers=KEY)
    message = assert_anthropic_error(response, 404, "not_found_error")
    assert "pass_through_paths" in message
    assert not any(fake.received for fake in fakes)


@pytest.mark.parametrize("model", ["bad\r\nx-injected: 1", "a\nb", "m" * 257, "tab\tmodel"])
def test_control_characters_or_oversized_model_names_are_refused(gateway, fakes, model):
    message = assert_anthropic_error(
        post(gateway, orjson.dumps(chat(model))), 400, "invalid_request_error"
    )
    assert "256 characters" in message
    assert not any(fake.received for fake in fakes)


# ------------------------------------------------------------------ property-based fuzzing

FUZZ_CONFIG = parse(
    """\
llm_providers:
  - model: anthropic/claude-sonnet-4-5
    access_key: k
    default: true
    routing_preferences:
      - {name: code reviews, description: reviewing code}
  - model: openai/gpt-4.1
    provider_interface: openai-chat
    access_key: k
    max_tokens: 100
    routing_preferences:
      - {name: code generation, description: writing code}
  - model: openai/o4-mini
    access_key: k
    reasoning: true
model_aliases:
  gpt: openai/gpt-4.1
"""
)
MODELS = ["claude-sonnet-4-5", "openai/gpt-4.1", "gpt", "openai/o4-mini", "claude-opus-4-8"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
block = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["text", "image", "document", "tool_use", "tool_result", "thinking", "nope"]
        )
        | json_values
    },
    optional={
        key: json_values | st.text()
        for key in ("text", "content", "id", "name", "input", "source", "tool_use_id", "is_error")
    },
)
message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", "tool"]) | json_values,
        "content": st.text() | st.lists(block | json_values, max_size=4) | json_values,
    }
)
tool = st.fixed_dictionaries(
    {"name": st.text(max_size=10) | json_values},
    optional={"description": json_values, "input_schema": json_values, "type": json_values},
)
request_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(MODELS) | json_values},
    optional={
        "messages": st.lists(message | json_values, max_size=4) | json_values,
        "system": st.text() | st.lists(block, max_size=2) | json_values,
        "tools": st.lists(tool | json_values, max_size=3) | json_values,
        **{
            key: json_values
            for key in (
                "stream",
                "max_tokens",
                "thinking",
                "tool_choice",
                "metadata",
                "stop_sequences",
                "temperature",
                "top_p",
                "output_config",
            )
        },
    },
)


def headers_message(path: str, **headers: str) -> ProcessingRequest:
    pairs = {":path": path, ":method": "POST", **JSON_TYPE, **headers}
    header_map = HeaderMap(
        headers=[HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()]
    )
    return ProcessingRequest(request_headers=HttpHeaders(headers=header_map))


def body_message(body: bytes, response: bool = False) -> ProcessingRequest:
    http_body = HttpBody(body=body, end_of_stream=True)
    if response:
        return ProcessingRequest(response_body=http_body)
    return ProcessingRequest(request_body=http_body)


async def exchange_once(runtime, path: str, raw: bytes) -> ProcessingResponse | GatewayError:
    """One request through every phase the sidecar sees, as Envoy would send them; GatewayError
    is the only allowed raise (the server turns it into an Anthropic error reply)."""
    exchange = Exchange(runtime)

    async def send(message: ProcessingRequest) -> ProcessingResponse:
        return ProcessingResponse.parse(await exchange.handle(decode_request(bytes(message))))

    try:
        await send(headers_message(path))
        reply = await send(body_message(raw))
        if exchange.translation is not None:
            status = HttpHeaders(
                headers=HeaderMap(headers=[HeaderValue(key=":status", raw_value=b"200")])
            )
            await send(ProcessingRequest(response_headers=status))
            await send(body_message(b"data: [DONE]\n\n", response=True))
        return reply
    except GatewayError as error:
        orjson.loads(error.body())
        return error


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=request_bodies, path=st.sampled_from(["/v1/messages", "/v1/messages/count_tokens"]))
def test_fuzzed_request_bodies_only_ever_raise_gateway_errors(body, path):
    runtime = build_runtime(FUZZ_CONFIG, RouterStage(FUZZ_CONFIG.routing))
    asyncio.run(exchange_once(runtime, path, orjson.dumps(body)))


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_fuzzed_raw_bytes_only_ever_raise_gateway_errors(raw):
    runtime = build_runtime(FUZZ_CONFIG, RouterStage(FUZZ_CONFIG.routing))
    result = asyncio.run(exchange_once(runtime, "/v1/messages", raw))
    assert isinstance(result, GatewayError) or raw.lstrip().startswith(b"{")


EVERY_RULE = Contract(
    reasoning=True,
    token_field="max_completion_tokens",
    thought_signatures=True,
    reasoning_echo=True,
    short_tool_ids=True,
    prompt_cache_key=True,
    file_parts=True,
)


@settings(max_examples=300, deadline=None)
@given(body=request_bodies)
def test_fuzzed_translation_raises_only_translation_errors(body):
    """With every contract rule on, so each rule's code sees the fuzzed bodies too."""
    try:
        out = translate_request(body, model="gpt-4.1", max_tokens_cap=100, contract=EVERY_RULE)
    except TranslationError:
        return
    assert isinstance(orjson.loads(out), dict)


openai_chunks = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "id": json_values,
            "choices": st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "index": json_values,
                        "delta": st.fixed_dictionaries(
                            {},
                            optional={
                                k: json_values | st.text()
                                for k in ("content", "reasoning_content", "tool_calls", "role")
                            },
                        )
                        | json_values,
                        "finish_reason": st.sampled_from(["stop", "length", "tool_calls"])
                        | json_values,
                    },
                )
                | json_values,
                max_size=2,
            )
            | json_values,
            "usage": json_values,
            "error": json_values,
        },
    )
    | json_values,
    max_size=6,
)


def events_of(stream: bytes) -> list[tuple[bytes, Any]]:
    parser = SSEParser()
    return [(name, orjson.loads(data)) for name, data in [*parser.feed(stream), *parser.close()]]


@settings(max_examples=300, deadline=None)
@given(
    chunks=openai_chunks,
    noise=st.binary(max_size=40),
    cut=st.integers(min_value=0, max_value=10_000),
)
def test_fuzzed_upstream_streams_always_give_a_terminated_anthropic_stream(chunks, noise, cut):
    raw = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + noise
    translator = StreamTranslator(model="gpt-4.1")
    out = translator.feed(raw[:cut]) + translator.feed(raw[cut:]) + translator.finish()
    events = events_of(out)
    assert events, "the client must always get something"
    assert events[-1][0] in (b"message_stop", b"error"), events


@settings(max_examples=200, deadline=None)
@given(
    status=st.sampled_from([200, 400, 401, 404, 429, 500, 502, 503]),
    body=json_values.map(orjson.dumps) | st.binary(max_size=100),
)
def test_fuzzed_upstream_json_answers_translate_to_anthropic_json(status, body):
    client_status, out = translate_response(status, body, model="gpt-4.1")
    answer = orjson.loads(out)
    assert answer["type"] in ("message", "error")
    assert (answer["type"] == "error") == (client_status >= 400)


def test_after_fuzzing_through_envoy_the_gateway_still_answers(strict_gateway, fakes):
    """Hostile bodies through the real Envoy and sidecar; then a normal request works."""

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=request_bodies.map(orjson.dumps) | st.binary(max_size=300))
    def send(body: bytes) -> None:
        response = post(strict_gateway, body)
        if response.status_code >= 400:
            assert response.json()["type"] == "error"

    send()
    response = httpx.post(f"{strict_gateway.url}/v1/messages", json=chat(), headers=KEY, timeout=10)
    assert response.status_code == 200
    assert response.json()["content"][0]["text"] == fakes[0].answer
