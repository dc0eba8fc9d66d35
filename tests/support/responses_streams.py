"""OpenAI Responses answers as test data: one answer, streamed and non-streamed.

`Answer` describes what a model said; `events` is the event sequence the Responses API
streams for it (created, in_progress, each output item added → part/deltas → done, completed
or incomplete), in the field sets of OpenAI's API reference; `sse` frames them (`event:` and
`data:` lines); `response` is the same answer as a non-streamed `response` object.
`check_with_sdk` validates every event with the `openai` SDK's own models and runs them
through the SDK's stream accumulator, whose final response must equal `response(answer)`:
the fake provider and the property tests share these builders, so both speak what the SDK
reads.
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass, field
from typing import Any

import orjson

JSON = dict[str, Any]


@dataclass(frozen=True)
class Call:
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Answer:
    summary: tuple[str, ...] = ()  # reasoning summary parts
    encrypted: str = ""  # the reasoning item's encrypted_content ("" when not asked for)
    reasoning: bool = False  # a reasoning item even without summary (Codex often has none)
    text: str = ""
    refusal: str = ""
    calls: tuple[Call, ...] = ()
    incomplete: str = ""  # incomplete_details.reason: max_output_tokens, content_filter
    usage: JSON | None = field(
        default_factory=lambda: {
            "input_tokens": 1200,
            "input_tokens_details": {"cached_tokens": 1024, "cache_write_tokens": 0},
            "output_tokens": 42,
            "output_tokens_details": {"reasoning_tokens": 20},
            "total_tokens": 1242,
        }
    )
    model: str = "gpt-5.2-codex"
    id: str = "resp_0a1b2c"


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def output_items(answer: Answer) -> list[JSON]:
    """The finished output items, in the order the model produced them."""
    items: list[JSON] = []
    if answer.summary or answer.encrypted or answer.reasoning:
        item: JSON = {
            "id": "rs_0a1b2c",
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": s} for s in answer.summary],
        }
        if answer.encrypted:
            item["encrypted_content"] = answer.encrypted
        items.append(item)
    content: list[JSON] = []
    if answer.text:
        content.append({"type": "output_text", "text": answer.text, "annotations": []})
    if answer.refusal:
        content.append({"type": "refusal", "refusal": answer.refusal})
    if content:
        status = "incomplete" if answer.incomplete else "completed"
        items.append(
            {
                "id": "msg_0a1b2c",
                "type": "message",
                "role": "assistant",
                "status": status,
                "content": content,
            }
        )
    for n, call in enumerate(answer.calls):
        items.append(
            {
                "id": f"fc_0a1b2c{n}",
                "type": "function_call",
                "status": "completed",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            }
        )
    return items


def response(
    answer: Answer, *, status: str | None = None, output: list[JSON] | None = None
) -> JSON:
    """The non-streamed `response` object (also the payload of the lifecycle events)."""
    final = status is None
    status = status or ("incomplete" if answer.incomplete else "completed")
    body: JSON = {
        "id": answer.id,
        "object": "response",
        "created_at": 1764400000,
        "status": status,
        "error": None,
        "incomplete_details": {"reason": answer.incomplete}
        if answer.incomplete and final
        else None,
        "instructions": None,
        "max_output_tokens": None,
        "model": answer.model,
        "output": output_items(answer) if output is None else output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": answer.usage if final else None,
        "metadata": {},
    }
    return body


def events(answer: Answer, *, size: int = 4) -> list[JSON]:
    """The event sequence of a streamed answer; deltas carry `size` characters each."""
    out: list[JSON] = []

    def emit(kind: str, **fields: Any) -> None:
        out.append({"type": kind, "sequence_number": len(out), **fields})

    emit("response.created", response=response(answer, status="in_progress", output=[]))
    emit("response.in_progress", response=response(answer, status="in_progress", output=[]))
    for index, item in enumerate(output_items(answer)):
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "reasoning":
            emit("response.output_item.added", output_index=index, item={**item, "summary": []})
            for k, part in enumerate(item["summary"]):
                empty = {"type": "summary_text", "text": ""}
                emit("response.reasoning_summary_part.added", **where, summary_index=k, part=empty)
                for piece in _pieces(part["text"], size):
                    emit(
                        "response.reasoning_summary_text.delta",
                        **where,
                        summary_index=k,
                        delta=piece,
                    )
                emit(
                    "response.reasoning_summary_text.done",
                    **where,
                    summary_index=k,
                    text=part["text"],
                )
                emit("response.reasoning_summary_part.done", **where, summary_index=k, part=part)
        elif item["type"] == "message":
            added = {**item, "status": "in_progress", "content": []}
            emit("response.output_item.added", output_index=index, item=added)
            for k, part in enumerate(item["content"]):
                at = {**where, "content_index": k}
                if part["type"] == "output_text":
                    empty: JSON = {"type": "output_text", "text": "", "annotations": []}
                    emit("response.content_part.added", **at, part=empty)
                    for piece in _pieces(part["text"], size):
                        emit("response.output_text.delta", **at, delta=piece, logprobs=[])
                    emit("response.output_text.done", **at, text=part["text"], logprobs=[])
                else:
                    emit("response.content_part.added", **at, part={**part, "refusal": ""})
                    for piece in _pieces(part["refusal"], size):
                        emit("response.refusal.delta", **at, delta=piece)
                    emit("response.refusal.done", **at, refusal=part["refusal"])
                emit("response.content_part.done", **at, part=part)
        else:
            added = {**item, "status": "in_progress", "arguments": ""}
            emit("response.output_item.added", output_index=index, item=added)
            for piece in _pieces(item["arguments"], size):
                emit("response.function_call_arguments.delta", **where, delta=piece)
            emit(
                "response.function_call_arguments.done",
                **where,
                name=item["name"],
                arguments=item["arguments"],
            )
        emit("response.output_item.done", output_index=index, item=item)
    final = response(answer)
    emit(f"response.{final['status']}", response=final)
    return out


def sse(items: list[JSON], *, newline: str = "\n", space: bool = True, named: bool = True) -> bytes:
    """Frame events as SSE: `event: TYPE` (unless `named` is false) and `data: JSON` lines."""
    nl = newline.encode()
    sep = b": " if space else b":"
    out = []
    for item in items:
        head = b"event" + sep + item["type"].encode() + nl if named else b""
        out.append(head + b"data" + sep + orjson.dumps(item) + nl + nl)
    return b"".join(out)


@functools.cache
def _event_adapter() -> Any:
    """The SDK's stream event union as a pydantic adapter (built once: it takes 40 ms)."""
    from openai.types.responses import ResponseStreamEvent
    from pydantic import TypeAdapter

    return TypeAdapter(ResponseStreamEvent)


def check_with_sdk(items: list[JSON]) -> JSON:
    """Every event through the `openai` SDK's models and its stream accumulator; returns the
    response the SDK assembled (as JSON, without the SDK's client-side `output_text`)."""
    from openai import omit
    from openai.lib.streaming.responses._responses import ResponseStreamState

    adapter = _event_adapter()
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    final = None
    for item in items:
        event = adapter.validate_python(item)
        for seen in state.handle_event(event):
            if seen.type in ("response.completed",):
                final = seen.response
    if final is None:  # response.incomplete: the SDK keeps the snapshot
        last = adapter.validate_python(items[-1])
        final = last.response
    return _plain(final.model_dump(mode="json", exclude_unset=True))


def _plain(value: Any) -> Any:
    """Drop the SDK's client-side extras (`parsed`, `output_text`) to compare with the wire."""
    if isinstance(value, dict):
        return {
            k: _plain(v)
            for k, v in value.items()
            if k not in ("parsed", "parsed_arguments", "output_text")
        }
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


BASH = Call("call_bash01", "Bash", '{"command": "echo hi there", "description": "say hi"}')
READ = Call("call_read02", "Read", '{"file_path": "/tmp/x.py", "limit": 20}')


def encrypted_for(turn: int) -> str:
    """Encrypted reasoning as the fake issues it for answer number `turn` (opaque to clients,
    Fernet-like as OpenAI's: `gAAAAAB` and URL-safe base64)."""
    return "gAAAAAB" + base64.urlsafe_b64encode(f"fake-reasoning-{turn:04d}".encode()).decode()


SECRET = encrypted_for(0)

ANSWERS: dict[str, Answer] = {
    "text": Answer(text="Hello! Here is a function:\n\n```python\ndef f(s): return s[::-1]\n```"),
    "tool": Answer(text="Let me run it.", calls=(BASH,)),
    "parallel": Answer(calls=(BASH, READ)),
    "reasoning": Answer(summary=("**Planning** the greeting.",), encrypted=SECRET, text="Hi."),
    "reasoning-two-parts": Answer(
        summary=("First part.", "Second part."), encrypted=SECRET, text="ok"
    ),
    "reasoning-tool": Answer(summary=("Need to run it.",), encrypted=SECRET, calls=(BASH,)),
    "codex-silent-reasoning": Answer(reasoning=True, encrypted=SECRET, calls=(READ,)),
    "summary-without-encrypted": Answer(summary=("Think.",), text="Done."),
    "unicode": Answer(text="naïve café — 日本語 😀🚀 مرحبا"),
    "refusal": Answer(refusal="I can't help with that."),
    "max-tokens": Answer(text="truncated because", incomplete="max_output_tokens"),
    "content-filter": Answer(text="partial", incomplete="content_filter"),
    "no-usage": Answer(text="no usage here", usage=None),
}
