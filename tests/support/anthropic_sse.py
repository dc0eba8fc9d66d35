"""Translated streams read back the way a client reads them: the Anthropic SDK's own SSE
decoder, accumulator and client, after checking the events' order."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import orjson
from anthropic._streaming import SSEDecoder
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from extproc.translate.openai_chat import StreamTranslator

EVENT = TypeAdapter(RawMessageStreamEvent)


def translate(
    stream: bytes, cuts: list[int] = (), translator: type = StreamTranslator, **kwargs: Any
) -> bytes:
    """Feed `stream` cut at `cuts` to a `translator` (Chat Completions' by default), then
    finish."""
    tr = translator(model="routed-model", **kwargs)
    out, last = [], 0
    for cut in sorted(cuts):
        out.append(tr.feed(stream[last:cut]))
        last = cut
    out.append(tr.feed(stream[last:]))
    out.append(tr.finish())
    return b"".join(out)


def events(out: bytes) -> list[dict[str, Any]]:
    """Parse with the SDK's own SSE decoder; every event name matches its data's type."""
    parsed = []
    for sse_event in SSEDecoder().iter_bytes(iter([out])):
        data = orjson.loads(sse_event.data)
        assert sse_event.event == data["type"]
        parsed.append(data)
    return parsed


def well_formed(evs: list[dict[str, Any]]) -> None:
    """One message_start first, one message_stop last, blocks strictly one after another."""
    assert evs[0]["type"] == "message_start"
    assert evs[-1]["type"] == "message_stop"
    assert [e["type"] for e in evs].count("message_start") == 1
    assert [e["type"] for e in evs].count("message_delta") == 1
    assert evs[-2]["type"] == "message_delta"
    open_index, next_index = None, 0
    for e in evs[1:-2]:
        if e["type"] == "content_block_start":
            assert open_index is None and e["index"] == next_index
            open_index, next_index = e["index"], next_index + 1
        elif e["type"] == "content_block_delta":
            assert e["index"] == open_index
        else:
            assert e["type"] == "content_block_stop" and e["index"] == open_index
            open_index = None
    assert open_index is None


def accumulate(out: bytes) -> Message:
    """Build the message with the SDK's accumulator, after strict validation of each event."""
    snapshot, json_bufs = None, {}
    evs = events(out)
    well_formed(evs)
    for data in evs:
        event = EVENT.validate_python(data)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    return Message.model_validate(snapshot.model_dump())


def sdk_client(body: bytes, status: int = 200) -> anthropic.Anthropic:
    """A real SDK client whose HTTP answer is `body` (our translated SSE)."""
    headers = {"content-type": "text/event-stream"}
    transport = httpx2.MockTransport(
        lambda request: httpx2.Response(status, headers=headers, content=body)
    )
    return anthropic.Anthropic(
        api_key="k",
        base_url="http://gateway",
        http_client=httpx2.Client(transport=transport),
        max_retries=0,
    )
