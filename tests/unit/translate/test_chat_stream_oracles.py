"""Streamed translation against answers written by hand, not against our own code.

The split-point and streamed-equals-non-streamed tests (test_chat_stream.py) compare the
translator with itself: a bug shared by both paths passes them. Here each OpenAI stream is
written out byte for byte, and next to it the Anthropic events it must become, written from
Anthropic's streaming documentation (event order, block shapes, delta types, stop reasons),
and the message the Anthropic SDK's own accumulator must build from them.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import RawMessageStreamEvent
from pydantic import TypeAdapter

from tests.support.anthropic_sse import events, translate

EVENT = TypeAdapter(RawMessageStreamEvent)
MESSAGE_ID = "msg_oracle01"
ESTIMATE = 9


def chunk(delta: dict | None = None, finish: str | None = None, **extra: Any) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    fields = {"id": "chatcmpl-o1", "object": "chat.completion.chunk", "created": 1}
    return (
        b"data: " + orjson.dumps({**fields, "model": "up", "choices": choices, **extra}) + b"\n\n"
    )


DONE = b"data: [DONE]\n\n"


def start(index: int, block: dict) -> dict:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, kind: str, key: str, value: str) -> dict:
    return {"type": "content_block_delta", "index": index, "delta": {"type": kind, key: value}}


def stop(index: int) -> dict:
    return {"type": "content_block_stop", "index": index}


def ending(stop_reason: str, usage: dict) -> list[dict]:
    """message_delta with the final usage (cache writes: none, OpenAI-style APIs have none),
    then message_stop."""
    return [
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {**usage, "cache_creation_input_tokens": 0},
        },
        {"type": "message_stop"},
    ]


MESSAGE_START = {
    "type": "message_start",
    "message": {
        "id": MESSAGE_ID,
        "type": "message",
        "role": "assistant",
        "model": "routed-model",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": ESTIMATE,
            "output_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    },
}

GROQ_USAGE = {
    "queue_time": 0.01,
    "prompt_tokens": 18,
    "prompt_time": 0.002,
    "completion_tokens": 2,
    "completion_time": 0.003,
    "total_tokens": 20,
    "total_time": 0.005,
}

# name: (OpenAI stream, the Anthropic events, the final message's content, stop_reason, usage)
ORACLES: dict[str, tuple[bytes, list[dict], list[dict], str, dict]] = {
    # Groq reports usage in `x_groq.usage` of the last chunk, not in `usage`.
    "groq-usage": (
        chunk({"role": "assistant", "content": ""}, x_groq={"id": "req_01"})
        + chunk({"content": "Hello"})
        + chunk({"content": " there"})
        + chunk({}, "stop", x_groq={"id": "req_01", "usage": GROQ_USAGE})
        + DONE,
        [
            MESSAGE_START,
            start(0, {"type": "text", "text": ""}),
            delta(0, "text_delta", "text", "Hello"),
            delta(0, "text_delta", "text", " there"),
            stop(0),
            *ending(
                "end_turn", {"input_tokens": 18, "output_tokens": 2, "cache_read_input_tokens": 0}
            ),
        ],
        [{"type": "text", "text": "Hello there"}],
        "end_turn",
        {"input_tokens": 18, "output_tokens": 2, "cache_read_input_tokens": 0},
    ),
    # A call that brings a name but neither id nor index is a new call (llama.cpp-style
    # servers omit both), not more arguments for the call before it.
    "nameless-index": (
        chunk({"role": "assistant", "content": None})
        + chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "Bash", "arguments": ""},
                    }
                ]
            }
        )
        + chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"command": "ls"}'}}]})
        + chunk(
            {
                "tool_calls": [
                    {"type": "function", "function": {"name": "Read", "arguments": '{"p": "/a"}'}}
                ]
            }
        )
        + chunk({}, "tool_calls")
        + chunk(None, usage={"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42})
        + DONE,
        [
            MESSAGE_START,
            start(0, {"type": "tool_use", "id": "call_1", "name": "Bash", "input": {}}),
            delta(0, "input_json_delta", "partial_json", '{"command": "ls"}'),
            stop(0),
            start(1, {"type": "tool_use", "id": "toolu_oracle01_1", "name": "Read", "input": {}}),
            delta(1, "input_json_delta", "partial_json", '{"p": "/a"}'),
            stop(1),
            *ending(
                "tool_use", {"input_tokens": 30, "output_tokens": 12, "cache_read_input_tokens": 0}
            ),
        ],
        [
            {"type": "tool_use", "id": "call_1", "name": "Bash", "input": {"command": "ls"}},
            {"type": "tool_use", "id": "toolu_oracle01_1", "name": "Read", "input": {"p": "/a"}},
        ],
        "tool_use",
        {"input_tokens": 30, "output_tokens": 12, "cache_read_input_tokens": 0},
    ),
    # Reasoning, then text cut by max tokens; usage inline on the finish chunk, with cached
    # prompt tokens counted apart from input as Anthropic does.
    "reasoning-length": (
        chunk({"role": "assistant", "content": ""})
        + chunk({"reasoning_content": "Short."})
        + chunk({"content": "Cut"})
        + chunk(
            {},
            "length",
            usage={
                "prompt_tokens": 1200,
                "completion_tokens": 5,
                "total_tokens": 1205,
                "prompt_tokens_details": {"cached_tokens": 1024},
            },
        )
        + DONE,
        [
            MESSAGE_START,
            start(0, {"type": "thinking", "thinking": "", "signature": ""}),
            delta(0, "thinking_delta", "thinking", "Short."),
            stop(0),
            start(1, {"type": "text", "text": ""}),
            delta(1, "text_delta", "text", "Cut"),
            stop(1),
            *ending(
                "max_tokens",
                {"input_tokens": 176, "output_tokens": 5, "cache_read_input_tokens": 1024},
            ),
        ],
        [
            {"type": "thinking", "thinking": "Short.", "signature": ""},
            {"type": "text", "text": "Cut"},
        ],
        "max_tokens",
        {"input_tokens": 176, "output_tokens": 5, "cache_read_input_tokens": 1024},
    ),
}


def translated(stream: bytes, cut: int | None = None) -> bytes:
    cuts = [] if cut is None else [cut]
    return translate(stream, cuts, message_id=MESSAGE_ID, input_tokens_estimate=ESTIMATE)


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_the_stream_becomes_the_events_written_by_hand(name):
    stream, expected, *_ = ORACLES[name]
    assert events(translated(stream)) == expected


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_every_split_point_gives_the_events_written_by_hand(name):
    stream, expected, *_ = ORACLES[name]
    wrong = [cut for cut in range(len(stream) + 1) if events(translated(stream, cut)) != expected]
    assert wrong == []


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_the_sdk_accumulator_builds_the_message_written_by_hand(name):
    stream, _, content, stop_reason, usage = ORACLES[name]
    snapshot, json_bufs = None, {}
    for data in events(translated(stream)):
        event = EVENT.validate_python(data)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    message = snapshot.model_dump(exclude_none=True)
    assert message.pop("content") == content
    assert message.pop("stop_reason") == stop_reason
    assert message.pop("usage") == {"cache_creation_input_tokens": 0, **usage}
    assert message == {
        "id": MESSAGE_ID,
        "type": "message",
        "role": "assistant",
        "model": "routed-model",
    }
