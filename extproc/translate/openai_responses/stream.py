"""OpenAI Responses events → Anthropic SSE: the streamed answer, one block per output item."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from extproc.translate import errors
from extproc.translate.anthropic_format import (
    JSON,
    MALFORMED,
    anthropic_tool_id,
    as_dict,
    tool_name,
)
from extproc.translate.openai_responses.reasoning import reasoning_signature
from extproc.translate.openai_responses.response import (
    anthropic_stop,
    anthropic_usage,
    failure,
    message_text,
    reasoning_text,
    translate_response,
)
from extproc.translate.stream import AnthropicStream


@dataclass
class _Item:
    """One output item: one Anthropic block, buffered while an earlier item is still open."""

    kind: str  # "thinking" | "text" | "tool_use"
    tool_id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)  # sent (or waiting to be sent) so far
    streamed: bool = False  # at least one delta arrived for it
    done: JSON | None = None  # the finished item, once `response.output_item.done` came
    index: int = -1  # Anthropic block index once started
    announced: bool = False  # its `added` (or `done`) came: a call's id and name are known


_KINDS = {"reasoning": "thinking", "message": "text", "function_call": "tool_use"}
_DELTAS = {
    "response.output_text.delta": "text",
    "response.refusal.delta": "text",
    "response.reasoning_summary_text.delta": "thinking",
    "response.reasoning_text.delta": "thinking",
    "response.function_call_arguments.delta": "tool_use",
}


class StreamTranslator(AnthropicStream):
    """Responses SSE bytes in, Anthropic SSE bytes out; split points don't matter.

    Each output item (reasoning, message, function call) becomes one block. Items arrive one
    after another; should an event for a later item come while an earlier one is open, it
    waits and is sent when its turn comes, so blocks stay sequential. A delta that comes
    before its item's `added` is kept for it (a call's block starts once its name is known);
    a second `added` or `done` for an item changes nothing.
    """

    def __init__(
        self,
        *,
        model: str,
        message_id: str | None = None,
        input_tokens_estimate: int = 0,
        tool_names: dict[str, str] | None = None,
        origin: str = "",
    ) -> None:
        super().__init__(
            model=model,
            message_id=message_id,
            input_tokens_estimate=input_tokens_estimate,
            tool_names=tool_names,
        )
        self._origin = origin
        self._items: dict[int, _Item] = {}  # by output_index
        self._order: list[int] = []  # output indexes in arrival order
        self._open = 0  # position in _order of the item that streams live
        self._next_index = 0
        self._calls = 0

    # -- events ---------------------------------------------------------------------------

    def _cut(self) -> None:
        self._end({"status": "completed"})

    def _translate_whole(self, body: bytes) -> tuple[int, bytes]:
        return translate_response(
            200, body, model=self._model, tool_names=self._tool_names, origin=self._origin
        )

    def _event(self, name: bytes, payload: bytes) -> None:
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            if name == b"error":
                self._fail("api_error", payload.decode("utf-8", "replace"))
            return  # otherwise keep-alive noise from a proxy
        if not isinstance(event, dict):
            return
        try:
            self._dispatch(event)
        except MALFORMED as exc:  # a field of the wrong type: end the answer visibly
            self._fail("api_error", f"malformed event from upstream: {exc}")

    def _dispatch(self, event: JSON) -> None:
        kind = event.get("type")
        if kind == "error" or (kind is None and "error" in event):
            err = errors.error_object(event) or event
            self._fail(errors.type_of(err, 500), errors.message_of(err))
            return
        response = as_dict(event.get("response"))
        if kind in ("response.created", "response.in_progress", "response.queued"):
            self._start(response)
        elif kind == "response.output_item.added":
            self._start(response)
            self._added(event["output_index"], as_dict(event.get("item")))
        elif kind in _DELTAS:
            self._start(response)
            self._delta(event, _DELTAS[kind])
        elif kind == "response.reasoning_summary_part.added" and event.get("summary_index"):
            self._delta({**event, "delta": "\n\n"}, "thinking")
        elif kind == "response.output_item.done":
            self._start(response)
            self._item_done(event["output_index"], as_dict(event.get("item")))
        elif kind in ("response.completed", "response.incomplete"):
            self._start(response)
            self._end(response)
        elif kind == "response.failed":
            _, error_type, message = failure(response)
            self._fail(error_type, message)

    def _start(self, response: JSON) -> None:
        if not self._started:
            self._start_message(response)

    # -- items ----------------------------------------------------------------------------

    def _item(self, output_index: int, kind: str) -> _Item:
        item = self._items.get(output_index)
        if item is None:
            item = _Item(kind)
            self._items[output_index] = item
            self._order.append(output_index)
        return item

    def _added(self, output_index: int, raw: JSON) -> None:
        kind = _KINDS.get(raw.get("type"))  # type: ignore[arg-type]
        if kind is None:
            return  # hosted tool calls (web search, ...) have no Anthropic block
        item = self._item(output_index, kind)
        if item.kind != kind:
            kinds = f"a {raw['type']} but its deltas were {item.kind}"
            raise ValueError(f"output item {output_index} is {kinds}")
        if item.announced:
            return
        item.announced = True
        if kind == "tool_use":
            item.tool_id = anthropic_tool_id(raw.get("call_id"), str(self._message_id), self._calls)
            item.name = tool_name(raw.get("name"), self._tool_names)
            self._calls += 1
        self._advance()

    def _delta(self, event: JSON, kind: str) -> None:
        delta = event.get("delta")
        if not isinstance(delta, str) or not delta:
            return
        item = self._item(event["output_index"], kind)
        if item.kind != kind or item.done is not None:
            return  # a delta of another kind than its item's, or after the item finished
        item.streamed = True
        item.parts.append(delta)
        if item.index >= 0:
            self._send_delta(item, delta)

    def _item_done(self, output_index: int, raw: JSON) -> None:
        item = self._items.get(output_index)
        if item is None or not item.announced:  # a server that sends whole items, or no `added`
            self._added(output_index, raw)
            item = self._items.get(output_index)
        if item is None or item.done is not None:
            return  # a hosted tool's item, or a repeated `done` (its block may be closed)
        if not item.streamed:  # a server that sends only whole items
            whole = self._whole_text(item, raw)
            if whole:
                item.parts.append(whole)
                if item.index >= 0:
                    self._send_delta(item, whole)
        item.done = raw
        self._advance()

    @staticmethod
    def _whole_text(item: _Item, raw: JSON) -> str:
        if item.kind == "thinking":
            return reasoning_text(raw)
        if item.kind == "text":
            return message_text(raw)
        arguments = raw.get("arguments")
        return arguments if isinstance(arguments, str) else ""

    def _advance(self) -> None:
        """Start the item whose turn it is; close finished ones and move on."""
        while self._open < len(self._order):
            item = self._items[self._order[self._open]]
            if item.index < 0:
                if not item.announced and item.kind == "tool_use":
                    return  # its block can't start before its id and name are known
                self._start_block(item)
            if item.done is None:
                return
            self._close(item)
            self._open += 1

    def _start_block(self, item: _Item) -> None:
        item.index = self._next_index
        self._next_index += 1
        self._block_start(item.index, item.kind, item.tool_id, item.name)
        if item.parts:
            self._send_delta(item, "".join(item.parts))

    def _send_delta(self, item: _Item, text: str) -> None:
        self._block_delta(item.index, item.kind, text)

    def _close(self, item: _Item) -> None:
        thinking = item.kind == "thinking"
        signature = reasoning_signature(item.done or {}, self._origin) if thinking else ""
        if signature:
            self._emit(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": item.index,
                    "delta": {"type": "signature_delta", "signature": signature},
                },
            )
        self._emit("content_block_stop", {"type": "content_block_stop", "index": item.index})

    def _end(self, response: JSON) -> None:
        """Close every block, then message_delta (stop reason, usage) and message_stop."""
        for output_index in self._order[self._open :]:
            item = self._items[output_index]
            if not item.announced and item.kind == "tool_use":
                message = f"output item {output_index} has arguments but never named its call"
                self._fail("api_error", f"malformed event from upstream: {message}")
                return
            if item.done is None:
                item.done = {}
        self._advance()
        self._usage = anthropic_usage(response.get("usage")) or self._usage
        self._end_message(anthropic_stop(response, self._calls > 0))
