"""Non-streamed answers and upstream errors → Anthropic JSON."""

from __future__ import annotations

import tracemalloc
import zlib
from typing import Any

import orjson
import pytest
from anthropic.types import Message
from anthropic.types.shared import ErrorResponse

from extproc.errors import GatewayError
from extproc.translate import response
from extproc.translate.errors import error_event
from extproc.translate.openai_chat import translate_response
from extproc.translate.response import ResponseTranslation
from extproc.translate.translator import ChatTranslator
from tests.support.exception_text import error_text
from tests.support.openai_streams import ANSWERS, BASH, completion


def ok(body: dict[str, Any]) -> Message:
    status, out = translate_response(200, orjson.dumps(body), model="routed-model")
    assert status == 200
    return Message.model_validate_json(out)


def err(status: int, body: bytes) -> tuple[int, dict[str, Any]]:
    client_status, out = translate_response(status, body, model="m")
    if client_status != 413:  # Anthropic's documented `request_too_large` isn't in the SDK's enum
        ErrorResponse.model_validate_json(out)
    return client_status, orjson.loads(out)["error"]


def test_text_answer() -> None:
    message = ok(completion(ANSWERS["text"]))
    assert message.model == "routed-model"
    assert message.id == "msg_chatcmpl-abc123"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == ANSWERS["text"].text
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert message.usage.input_tokens == 1200 - 1024
    assert message.usage.cache_read_input_tokens == 1024
    assert message.usage.cache_creation_input_tokens == 0
    assert message.usage.output_tokens == 42


def test_reasoning_comes_first_as_a_thinking_block() -> None:
    for name in ("reasoning", "reasoning-key"):
        message = ok(completion(ANSWERS[name]))
        assert [b.type for b in message.content] == ["thinking", "text"]
        assert message.content[0].thinking == ANSWERS[name].reasoning
        assert message.content[0].signature == ""


@pytest.mark.parametrize("first", ["", None, 7])
def test_reasoning_under_its_second_key_when_the_first_holds_none(first: Any) -> None:
    body = completion(ANSWERS["text"])
    body["choices"][0]["message"] |= {"reasoning_content": first, "reasoning": "Let me think."}
    message = ok(body)
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Let me think."


def test_tool_calls_become_tool_use_blocks() -> None:
    message = ok(completion(ANSWERS["parallel"]))
    assert message.stop_reason == "tool_use"
    assert [(b.type, b.id, b.name) for b in message.content] == [
        ("tool_use", "call_bash01", "Bash"),
        ("tool_use", "call_read02", "Read"),
    ]
    assert message.content[0].input == orjson.loads(BASH.arguments)


def test_invalid_arguments_become_an_empty_input() -> None:
    body = completion(ANSWERS["tool"])
    body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = '{"command": "ec'
    assert ok(body).content[1].input == {}


def test_tool_call_ids_names_and_arguments_as_providers_send_them() -> None:
    calls = [
        {"type": "function", "function": {"name": "Bash", "arguments": {"command": "ls"}}},
        {"id": "call.2/x", "function": {"name": "Read", "arguments": "[1]"}},
        {"id": "", "function": {"arguments": None}},
        "junk",
    ]
    body = {"id": "chatcmpl-9", "choices": [{"index": 0, "message": {"tool_calls": calls}}]}
    content = orjson.loads(translate_response(200, orjson.dumps(body), model="m")[1])["content"]
    assert content == [
        {
            "type": "tool_use",
            "id": "toolu_chatcmpl-9_0",
            "name": "Bash",
            "input": {"command": "ls"},
        },
        {"type": "tool_use", "id": "call_2_x", "name": "Read", "input": {}},
        {"type": "tool_use", "id": "toolu_chatcmpl-9_2", "name": "", "input": {}},
    ]


def test_a_tool_name_that_is_not_a_string_is_a_malformed_answer() -> None:
    call = {"id": "c1", "function": {"name": 5, "arguments": "{}"}}
    body = {"id": "x", "choices": [{"index": 0, "message": {"tool_calls": [call]}}]}
    assert err(200, orjson.dumps(body)) == (
        502,
        {
            "type": "api_error",
            "message": "malformed answer from upstream: "
            "a tool call's name must be a string, not int",
        },
    )


@pytest.mark.parametrize(
    ("finish", "has_tools", "stop_reason"),
    [
        ("stop", False, "end_turn"),
        ("length", False, "max_tokens"),
        ("tool_calls", True, "tool_use"),
        ("function_call", True, "tool_use"),
        ("content_filter", False, "refusal"),
        ("stop", True, "tool_use"),  # Gemini and Ollama say "stop" when calling tools
        (None, False, "end_turn"),
        ("something_new", False, "end_turn"),
    ],
)
def test_finish_reasons(finish: Any, has_tools: bool, stop_reason: str) -> None:
    body = completion(ANSWERS["tool"] if has_tools else ANSWERS["text"])
    body["choices"][0]["finish_reason"] = finish
    assert ok(body).stop_reason == stop_reason


def test_matched_stop_string_when_the_server_names_it() -> None:
    body = completion(ANSWERS["text"])
    body["choices"][0]["stop_reason"] = "###"
    message = ok(body)
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "###")


@pytest.mark.parametrize(
    ("finish", "matched", "stop_reason"),
    [
        ("stop", 151645, "end_turn"),  # vLLM names a stop token by its id
        ("length", "###", "max_tokens"),
    ],
)
def test_a_stop_reason_that_names_no_matched_string(
    finish: str, matched: Any, stop_reason: str
) -> None:
    body = completion(ANSWERS["text"])
    body["choices"][0] |= {"finish_reason": finish, "stop_reason": matched}
    message = ok(body)
    assert (message.stop_reason, message.stop_sequence) == (stop_reason, None)


def test_missing_usage_and_id() -> None:
    body = completion(ANSWERS["no-usage"])
    del body["id"]
    message = ok(body)
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (0, 0)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (0, 0)
    assert message.id.startswith("msg_")
    assert message.id == ok(body).id  # stable for the same answer


THINK = {"type": "thinking", "signature": ""}


@pytest.mark.parametrize(
    ("content", "blocks"),
    [
        (
            [
                {"type": "thinking", "thinking": [{"type": "text", "text": "let me "}, "x"]},
                {
                    "type": "thinking",
                    "thinking": [{"type": "image"}, {"type": "text", "text": "see"}],
                },
                {"type": "text", "text": "42"},
            ],
            [
                {**THINK, "thinking": "let me "},
                {**THINK, "thinking": "see"},
                {"type": "text", "text": "42"},
            ],
        ),
        (
            ["junk", {"type": "thinking", "thinking": "plain"}, {"type": "text", "text": ""}],
            [{**THINK, "thinking": "plain"}],
        ),
        (
            [
                {"type": "thinking", "thinking": 5},
                {"type": "text", "text": 5},
                {"type": "image_url"},
            ],
            [],
        ),
        ("", []),
        ({"type": "text", "text": "not a list"}, []),
    ],
)
def test_typed_content_chunks_become_thinking_and_text_blocks(
    content: Any, blocks: list[dict[str, Any]]
) -> None:
    # Mistral's (Magistral's) answers put reasoning in `thinking` chunks of `content`.
    body = completion(ANSWERS["text"])
    body["choices"][0]["message"] = {"role": "assistant", "content": content}
    ok(body)
    assert orjson.loads(translate_response(200, orjson.dumps(body), model="m")[1])["content"] == (
        blocks
    )


def test_refusal_is_shown_as_text() -> None:
    body = completion(ANSWERS["text"])
    body["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "refusal": "I can't help.",
    }
    assert [b.text for b in ok(body).content] == ["I can't help."]


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
        (599, "api_error"),
    ],
)
def test_status_maps_to_type_and_passes_through(status: int, kind: str) -> None:
    body = b'{"error": {"message": "upstream says no", "type": "whatever", "code": null}}'
    assert err(status, body) == (status, {"type": kind, "message": "upstream says no"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "upstream answered HTTP 502 with no body"),
        (
            b"<html><head><title>502 Bad Gateway</title><style>p{}</style></head><body><h1>Bad\nGateway</h1></body></html>",
            "upstream answered HTTP 502: 502 Bad Gateway Bad Gateway",
        ),
        (
            b"upstream connect error or disconnect/reset before headers",
            "upstream answered HTTP 502: upstream connect error or disconnect/reset before headers",
        ),
        (
            b'[{"error": {"code": 502, "message": "Gemini is down", "status": "UNAVAILABLE"}}]',
            "Gemini is down",
        ),
        (b'{"error": "plain string"}', "plain string"),
        (b'{"detail": "FastAPI style"}', 'upstream answered HTTP 502: {"detail": "FastAPI style"}'),
        (b"\xff\xfe not utf-8", "upstream answered HTTP 502: \ufffd\ufffd not utf-8"),
    ],
)
def test_any_error_body_gives_a_readable_message(body: bytes, message: str) -> None:
    assert err(502, body) == (502, {"type": "api_error", "message": message})


def test_non_error_statuses_that_are_not_2xx_become_502() -> None:
    assert err(302, b"moved")[0] == 502


def test_2xx_with_an_error_object() -> None:
    assert err(200, b'{"error": {"code": 429, "message": "busy"}}') == (
        429,
        {"type": "rate_limit_error", "message": "busy"},
    )
    assert err(200, b'{"error": {"message": "odd"}}') == (
        502,
        {"type": "api_error", "message": "odd"},
    )


def test_2xx_that_is_not_a_completion() -> None:
    assert err(200, b"<html>oops</html>")[1]["type"] == "api_error"
    for body in (b'{"choices": []}', b'[{"choices": []}]', b'"choices"', b"42"):
        assert err(200, body) == (
            502,
            {"type": "api_error", "message": "upstream answer has no choices"},
        )
    malformed = {"choices": [{"index": 0, "message": {"tool_calls": [{"function": "x"}]}}]}
    assert err(200, orjson.dumps(malformed)) == (
        502,
        {
            "type": "api_error",
            "message": "malformed answer from upstream: "
            + error_text(lambda: "x".get("name")),  # the call's function is "x"
        },
    )


# -- ResponseTranslation: encodings, counts and the inflate limit --------------------------------


def gzipped(data: bytes, wbits: int = 31) -> bytes:
    packer = zlib.compressobj(1, wbits=wbits)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("encoding", "pack"),
    [
        ("", lambda body: body),
        ("gzip", gzipped),
        ("x-gzip", gzipped),
        (" GZip ", gzipped),
        ("deflate", lambda body: gzipped(body, wbits=15)),
    ],
)
def test_an_answer_inflates_whatever_its_encoding_is_called(encoding: str, pack: Any) -> None:
    """x-gzip is gzip's old name (RFC 9110, 8.4.1.3); deflate is zlib framing."""
    wire = pack(orjson.dumps(completion(ANSWERS["text"])))
    translation = ResponseTranslation(
        ChatTranslator(upstream_model="routed-model", model="routed-model"),
        streaming_requested=False,
    )
    assert translation.on_headers(200, encoding) == {"content-type": "application/json"}
    assert translation.compressed == bool(encoding)
    out = translation.on_body(wire[:5], end=False) + translation.on_body(wire[5:], end=True)
    assert Message.model_validate_json(out).content[0].text == ANSWERS["text"].text
    assert translation.usage() == {
        "input_tokens": 176,
        "output_tokens": 42,
        "cache_read_input_tokens": 1024,
        "cache_creation_input_tokens": 0,
    }


@pytest.mark.parametrize("streaming", [False, True])
def test_a_bomb_in_the_last_chunk_is_refused_after_inflating_only_the_limit(
    streaming: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inflating stops one byte past the limit even when nothing more is to come."""
    monkeypatch.setattr(response, "INFLATED_MAX", 1 << 16)
    bomb = gzipped(b"\n" * (16 << 20))
    translation = ResponseTranslation(
        ChatTranslator(upstream_model="routed-model", model="routed-model"),
        streaming_requested=streaming,
    )
    translation.on_headers(200, "gzip")
    message = (
        "The gateway stopped reading the provider's answer: it inflates to more than 65536 bytes."
    )
    was_tracing = tracemalloc.is_tracing()  # PYTHONTRACEMALLOC=1 starts it before the tests
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        if streaming:
            assert translation.on_body(bomb, end=True) == error_event("api_error", message)
        else:
            with pytest.raises(GatewayError) as raised:
                translation.on_body(bomb, end=True)
            assert (raised.value.status, raised.value.error_type) == (502, "api_error")
            assert raised.value.message == message
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        if not was_tracing:
            tracemalloc.stop()
    assert peak < 4 << 20  # inflating it all would hold 16 MiB
    assert translation.on_body(b"", end=True) == b""
