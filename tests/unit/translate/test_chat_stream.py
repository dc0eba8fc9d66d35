"""Streamed answers: OpenAI SSE → Anthropic SSE, whatever the split points, and the Anthropic
SDK's own accumulator must build the same message as the non-streamed translation."""

from __future__ import annotations

import anthropic
import orjson
import pytest
from anthropic.types import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.translate.openai_chat import StreamTranslator, translate_response
from extproc.translate.token_estimate import count_tokens_estimate, estimate_input_tokens
from tests.support.anthropic_sse import accumulate, events, sdk_client, translate
from tests.support.openai_streams import (
    ANSWERS,
    BASH,
    READ,
    RECORDED,
    Answer,
    Call,
    chunks,
    completion,
    sse,
)


def non_streamed(answer: Answer) -> Message:
    status, body = translate_response(200, orjson.dumps(completion(answer)), model="routed-model")
    assert status == 200
    return Message.model_validate_json(body)


def cases() -> dict[str, bytes]:
    out = dict(RECORDED)
    for name, answer in ANSWERS.items():
        out[name] = sse(chunks(answer))
    out["parallel-interleaved"] = sse(chunks(ANSWERS["parallel"], interleave=True))
    out["usage-null-choices"] = sse(chunks(ANSWERS["text"], usage="null"))
    out["usage-inline"] = sse(chunks(ANSWERS["tool"], usage="inline"))
    out["nospace-crlf"] = sse(chunks(ANSWERS["reasoning"]), newline="\r\n", space=False)
    out["cr-no-done"] = sse(chunks(ANSWERS["unicode"], size=2), newline="\r", done=False)
    # Coarser pieces keep these small enough to try every split point.
    out["small-tool"] = sse(chunks(ANSWERS["tool"], size=20))
    out["small-parallel-interleaved"] = sse(chunks(ANSWERS["parallel"], size=16, interleave=True))
    out["small-reasoning-crlf-nospace"] = sse(
        chunks(ANSWERS["reasoning"], size=12), newline="\r\n", space=False
    )
    return out


CASES = cases()
SMALL = [name for name, stream in CASES.items() if len(stream) < 3000]


@pytest.mark.parametrize("name", SMALL)
def test_every_single_split_point_gives_the_same_bytes(name: str) -> None:
    stream = CASES[name]
    whole = translate(stream)
    for cut in range(1, len(stream)):
        assert translate(stream, [cut]) == whole, cut


@pytest.mark.parametrize("name", ["openai-text", "deepseek-reasoning", "ollama-cr", "unicode"])
def test_byte_by_byte_gives_the_same_bytes(name: str) -> None:
    stream = CASES[name]
    assert translate(stream, list(range(1, len(stream)))) == translate(stream)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(CASES)))
def test_random_multi_splits_give_the_same_bytes(data: st.DataObject, name: str) -> None:
    stream = CASES[name]
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=40))
    assert translate(stream, cuts) == translate(stream)


# Each case's stop reason, by hand (a new case needs its line): finish_reason stop →
# end_turn, length → max_tokens, tool_calls → tool_use, and tool_use too when calls came with
# "stop" (as Gemini sends).
STOP_REASONS = {
    **dict.fromkeys(
        [
            "openai-text",
            "deepseek-reasoning",
            "ollama-cr",
            "text",
            "reasoning",
            "reasoning-key",
            "unicode",
            "no-usage",
            "usage-null-choices",
            "nospace-crlf",
            "cr-no-done",
            "small-reasoning-crlf-nospace",
        ],
        "end_turn",
    ),
    "length": "max_tokens",
    **dict.fromkeys(
        [
            "openai-parallel-tools",
            "gemini-tools-nospace",
            "gemini3-signature",
            "ollama-index-reuse",
            "id-changes-mid-call",
            "tool",
            "parallel",
            "parallel-interleaved",
            "usage-inline",
            "small-tool",
            "small-parallel-interleaved",
        ],
        "tool_use",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_sdk_accumulator_accepts_every_stream(name: str) -> None:
    message = accumulate(translate(CASES[name]))
    assert message.model == "routed-model"
    assert message.stop_reason == STOP_REASONS[name]


VARIANTS = [
    (name, variant)
    for name in ANSWERS
    for variant in ("empty", "null", "inline", "interleave", "pieces-1", "crlf-nospace")
]


@pytest.mark.parametrize(("name", "variant"), VARIANTS)
def test_streamed_message_matches_non_streamed(name: str, variant: str) -> None:
    answer = ANSWERS[name]
    if variant in {"empty", "null", "inline"}:
        stream = sse(chunks(answer, usage=variant))
    elif variant == "interleave":
        stream = sse(chunks(answer, interleave=True))
    elif variant == "pieces-1":
        stream = sse(chunks(answer, size=1))
    else:
        stream = sse(chunks(answer), newline="\r\n", space=False)
    streamed, plain = accumulate(translate(stream)), non_streamed(answer)
    assert [b.model_dump() for b in streamed.content] == [b.model_dump() for b in plain.content]
    assert streamed.stop_reason == plain.stop_reason == STOP_REASONS[name]
    assert streamed.stop_sequence == plain.stop_sequence
    if answer.usage:
        assert streamed.usage == plain.usage


def test_recorded_openai_text() -> None:
    message = accumulate(translate(RECORDED["openai-text"], input_tokens_estimate=17))
    assert [b.model_dump() for b in message.content] == [
        {"type": "text", "text": "Hi there é", "citations": None}
    ]
    assert message.id == "msg_chatcmpl-Bx1"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (19, 3)


def test_message_start_carries_the_estimate_until_usage_arrives() -> None:
    evs = events(translate(RECORDED["openai-text"], input_tokens_estimate=17))
    assert evs[0]["message"]["usage"]["input_tokens"] == 17
    assert evs[-2]["usage"] == {
        "input_tokens": 19,
        "output_tokens": 3,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }


def test_the_estimate_counts_the_system_messages_and_tools() -> None:
    """One token per 4 bytes of the JSON the model reads: the system (40 bytes here), the
    messages (70) and the tools (50); never 0."""
    body = {
        "model": "claude-x",
        "max_tokens": 100,
        "system": "s" * 38,
        "messages": [{"role": "user", "content": "x" * 40}],
        "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
    }
    assert count_tokens_estimate(body) == {"input_tokens": 40}
    assert estimate_input_tokens({**body, "tools": []}) == 27
    assert estimate_input_tokens({**body, "system": ""}) == 30
    assert estimate_input_tokens({"messages": []}) == 1


def test_cached_tokens_are_reported_apart() -> None:
    message = accumulate(translate(RECORDED["deepseek-reasoning"]))
    assert message.usage.input_tokens == 14
    assert message.usage.cache_read_input_tokens == 16
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Hmm — think"
    assert message.content[0].signature == ""
    assert message.content[1].text == "Answer 😀"


def test_parallel_calls_become_sequential_tool_use_blocks() -> None:
    for name in ("openai-parallel-tools", "gemini-tools-nospace"):
        message = accumulate(translate(RECORDED[name]))
        assert [b.type for b in message.content] == ["tool_use", "tool_use"]
        assert [b.name for b in message.content] == ["Bash", "Read"]
        assert message.stop_reason == "tool_use", name  # Gemini says "stop" with tool calls


def test_interleaved_fragments_wait_for_their_turn() -> None:
    answer = Answer(calls=(BASH, READ), finish_reason="tool_calls")
    out = translate(sse(chunks(answer, size=4, interleave=True)))
    message = accumulate(out)
    assert [b.input for b in message.content] == [
        orjson.loads(BASH.arguments),
        orjson.loads(READ.arguments),
    ]
    # The first call streams live; the second is sent whole once the first is complete.
    deltas = [e for e in events(out) if e["type"] == "content_block_delta"]
    assert [d["index"] for d in deltas].count(1) == 1


def test_a_complete_call_closes_as_soon_as_the_next_one_starts() -> None:
    stream = sse(chunks(Answer(calls=(BASH, READ), finish_reason="tool_calls")))
    tr = StreamTranslator(model="m")
    head = stream.index(b'"id":"call_read02"')
    start = stream.rindex(b"data:", 0, head)
    first = events(tr.feed(stream[:start]) + b"")
    second = tr.feed(stream[start : stream.index(b"\n\n", head) + 2])
    assert [e["type"] for e in first][-1] == "content_block_delta"
    assert b"content_block_stop" in second and b'"name":"Read"' in second


def test_text_after_an_unfinished_call_waits() -> None:
    call = {"index": 0, "id": "call_1", "function": {"name": "Bash", "arguments": '{"command":'}}
    more = {"index": 0, "function": {"arguments": ' "ls"}'}}
    stream = sse(
        [
            {"id": "x", "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]},
            {"id": "x", "choices": [{"index": 0, "delta": {"content": "note"}}]},
            {"id": "x", "choices": [{"index": 0, "delta": {"tool_calls": [more]}}]},
            {"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        ]
    )
    message = accumulate(translate(stream))
    assert [b.type for b in message.content] == ["tool_use", "text"]
    assert message.content[0].input == {"command": "ls"}


def test_calls_without_index_are_matched_by_id_or_continue_the_last() -> None:
    first = {"id": "c1", "function": {"name": "Bash", "arguments": '{"command"'}}
    cont = {"function": {"arguments": ': "ls"}'}}
    second = {"id": "c2", "function": {"name": "Read", "arguments": '{"file_path": "/a"}'}}
    stream = sse(
        [
            {"id": "x", "choices": [{"index": 0, "delta": {"tool_calls": [first]}}]},
            {"id": "x", "choices": [{"index": 0, "delta": {"tool_calls": [cont, second]}}]},
            {"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        ]
    )
    message = accumulate(translate(stream))
    assert [(b.id, b.input) for b in message.content] == [
        ("c1", {"command": "ls"}),
        ("c2", {"file_path": "/a"}),
    ]


def test_tool_ids_keep_only_characters_anthropic_accepts() -> None:
    call = {"index": 0, "id": "functions.Bash:0", "function": {"name": "Bash", "arguments": "{}"}}
    missing = {"index": 1, "function": {"name": "Read", "arguments": "{}"}}
    stream = sse([{"id": "x", "choices": [{"index": 0, "delta": {"tool_calls": [call, missing]}}]}])
    message = accumulate(translate(stream))
    assert message.content[0].id == "functions_Bash_0"
    assert message.content[1].id == "toolu_x_1"


def test_end_without_finish_reason_or_done_still_terminates() -> None:
    stream = sse(chunks(ANSWERS["tool"], usage="none"), done=False)
    stream = stream[: stream.index(b'"finish_reason":"tool_calls"')]
    stream = (
        stream[: stream.rindex(b"\n\n") + 2]
        + b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"cut'
    )
    message = accumulate(translate(stream))
    assert [b.type for b in message.content] == ["text", "tool_use"]
    assert message.content[1].input == orjson.loads(BASH.arguments)
    assert message.stop_reason == "tool_use"
    assert message.usage.output_tokens > 0  # estimated from what was sent


def test_trailing_event_without_blank_line_counts() -> None:
    stream = (
        b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}'
    )
    message = accumulate(translate(stream))
    assert message.content[0].text == "hi"


def test_nothing_at_all_is_an_error_event() -> None:
    for stream in (b"", b": ping\n\n", b"data: [DONE]\n\n", b"\r\n"):
        evs = events(translate(stream))
        assert [e["type"] for e in evs] == ["error"]
        assert evs[0]["error"]["type"] == "api_error"


def test_mid_stream_error_stops_the_stream() -> None:
    tr = StreamTranslator(model="m")
    stream = sse(chunks(ANSWERS["text"]))
    head = tr.feed(stream[: stream.index(b"\n\n", 400) + 2])
    err = tr.feed(b'data: {"error": {"message": "Rate limit", "type": "rate_limit_exceeded"}}\n\n')
    assert tr.feed(b'data: {"id":"x","choices":[]}\n\n') == b""
    assert tr.finish() == b""
    assert b"message_start" in head
    assert events(err) == [
        {"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit"}}
    ]


def test_non_json_data_is_skipped_unless_it_is_an_error_event() -> None:
    stream = CASES["openai-text"]
    cut = stream.index(b"data:", 10)
    noisy = stream[:cut] + b"data: keep-alive\n\n" + stream[cut:]
    assert translate(noisy) == translate(stream)
    out = translate(stream[:cut] + b"event: error\ndata: upstream timed out\n\n" + stream[cut:])
    assert events(out)[-1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "upstream timed out"},
    }


def test_mid_stream_error_with_a_numeric_code() -> None:
    out = translate(b'data: {"error": {"code": 502, "message": "provider down"}}\n\n')
    assert events(out)[0]["error"] == {"type": "api_error", "message": "provider down"}


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (429, b'{"error": {"message": "slow down", "type": "requests"}}', "rate_limit_error"),
        (401, b'{"error": {"message": "bad key"}}', "authentication_error"),
        (503, b"<html><body>Service Unavailable</body></html>", "overloaded_error"),
        (500, b"", "api_error"),
    ],
)
def test_http_error_on_a_streamed_request(status: int, body: bytes, kind: str) -> None:
    tr = StreamTranslator(model="m")
    evs = events(tr.error(status, body))
    assert [e["error"]["type"] for e in evs] == [kind]
    assert tr.finish() == b""


def test_vllm_matched_stop_string_becomes_stop_sequence() -> None:
    stream = sse(
        [
            {"id": "v", "choices": [{"index": 0, "delta": {"content": "a"}}]},
            {
                "id": "v",
                "choices": [
                    {"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": "END"}
                ],
            },
        ]
    )
    message = accumulate(translate(stream))
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")


def test_content_after_finish_reason_is_still_well_formed() -> None:
    stream = sse(
        [
            {
                "id": "v",
                "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}],
            },
            {"id": "v", "choices": [{"index": 0, "delta": {"content": "b"}}]},
        ]
    )
    assert [b.text for b in accumulate(translate(stream)).content] == ["a", "b"]


def test_json_answer_to_a_streamed_request_is_replayed_as_events() -> None:
    answer = ANSWERS["tool"]
    body = orjson.dumps(completion(answer))
    for cuts in ([], [1], [len(body) // 2]):
        message = accumulate(translate(body, cuts))
        plain = non_streamed(answer)
        assert [b.model_dump() for b in message.content] == [b.model_dump() for b in plain.content]
        assert (message.stop_reason, message.usage) == (plain.stop_reason, plain.usage)
    translator = StreamTranslator(model="routed-model")
    translator.feed(body)
    translator.finish()
    assert translator.usage == {  # the counts for the access log
        "input_tokens": 176,
        "output_tokens": 42,
        "cache_read_input_tokens": 1024,
        "cache_creation_input_tokens": 0,
    }


def test_json_error_answer_to_a_streamed_request() -> None:
    evs = events(translate(b'{"error": {"message": "nope", "type": "invalid_request_error"}}'))
    assert evs == [{"type": "error", "error": {"type": "invalid_request_error", "message": "nope"}}]


def test_message_id_can_be_given() -> None:
    evs = events(translate(RECORDED["openai-text"], message_id="msg_fixed"))
    assert evs[0]["message"]["id"] == "msg_fixed"


def test_mistral_typed_content_chunks() -> None:
    think = {"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}
    stream = sse(
        [
            {"id": "m", "choices": [{"index": 0, "delta": {"content": [think]}}]},
            {
                "id": "m",
                "choices": [{"index": 0, "delta": {"content": [{"type": "text", "text": "ok"}]}}],
            },
            {"id": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        ]
    )
    message = accumulate(translate(stream))
    assert [
        (b.type, getattr(b, "thinking", None) or getattr(b, "text", None)) for b in message.content
    ] == [
        ("thinking", "hmm"),
        ("text", "ok"),
    ]


def test_invalid_json_argument_fragments_never_break_framing() -> None:
    call = Call("c", "Bash", '{"command": "ls"')  # truncated by max tokens
    message = accumulate(translate(sse(chunks(Answer(calls=(call,), finish_reason="length")))))
    assert message.stop_reason == "max_tokens"
    assert message.content[0].input == {"command": "ls"}


@pytest.mark.parametrize("name", ["openai-parallel-tools", "deepseek-reasoning", "tool"])
def test_the_sdk_message_stream_reads_translated_streams(name: str) -> None:
    client = sdk_client(translate(CASES[name]))
    request = {
        "model": "claude-x",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with client.messages.stream(**request) as stream:
        final = stream.get_final_message()
    assert Message.model_validate(final.model_dump()) == accumulate(translate(CASES[name]))


def test_the_sdk_raises_on_a_translated_error_event() -> None:
    tr = StreamTranslator(model="m")
    client = sdk_client(tr.error(529, b'{"error": {"message": "busy"}}'))
    request = {
        "model": "claude-x",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with (
        pytest.raises(anthropic.APIStatusError, match="busy"),
        client.messages.stream(**request) as stream,
    ):
        stream.get_final_message()


def test_a_call_waits_for_its_name_and_keeps_its_place() -> None:
    nameless = {"index": 0, "id": "c1", "function": {"arguments": ""}}
    named = {"index": 0, "function": {"name": "Bash", "arguments": '{"command": "ls"}'}}
    stream = sse(
        [
            {"id": "x", "choices": [{"index": 0, "delta": {"content": "before "}}]},
            {"id": "x", "choices": [{"index": 0, "delta": {"tool_calls": [nameless]}}]},
            {"id": "x", "choices": [{"index": 0, "delta": {"content": "after"}}]},
            {"id": "x", "choices": [{"index": 0, "delta": {"tool_calls": [named]}}]},
            {"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        ]
    )
    message = accumulate(translate(stream))
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [
        ("text", "before "),
        ("tool_use", None),
        ("text", "after"),
    ]
    assert (message.content[1].id, message.content[1].name) == ("c1", "Bash")


def test_a_tool_name_that_is_not_a_string_ends_the_stream_with_an_error() -> None:
    numbered = {"index": 0, "id": "c1", "function": {"name": 5, "arguments": "{}"}}
    stream = sse(
        [
            {"id": "x", "choices": [{"index": 0, "delta": {"content": "hi"}}]},
            {"id": "x", "choices": [{"index": 0, "delta": {"tool_calls": [numbered]}}]},
            {"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        ]
    )
    evs = events(translate(stream))
    assert not [e for e in evs if e.get("content_block", {}).get("type") == "tool_use"]
    assert evs[-1] == {
        "type": "error",
        "error": {
            "type": "api_error",
            "message": "malformed chunk from upstream: "
            "a tool call's name must be a string, not int",
        },
    }
