"""What both stream translators share: upstream SSE bytes in, Anthropic SSE bytes out.

A subclass reads its provider's events (`_event`), says how a stream that simply ends is
closed (`_cut`), and translates a whole JSON answer (`_translate_whole`) for upstreams
that ignore `stream`. This class feeds the parser, collects the output, and makes sure the
client always gets a terminated message or one `event: error`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import orjson

from extproc.translate import errors
from extproc.translate.anthropic_format import (
    JSON,
    anthropic_message,
    anthropic_message_id,
    message_events,
)
from extproc.translate.sse import Event, SSEEventTooLarge, SSEParser, encode_event


class AnthropicStream:
    def __init__(
        self,
        *,
        model: str,
        message_id: str | None = None,
        input_tokens_estimate: int = 0,
        tool_names: dict[str, str] | None = None,
    ) -> None:
        self._model = model
        self._tool_names = tool_names or {}
        self._message_id = message_id
        self._input_estimate = input_tokens_estimate
        self._parser = SSEParser()
        self._raw: list[bytes] | None = []  # the body, kept until an SSE event shows up (the
        # parser's limit bounds it: its bytes are all bytes without a complete event)
        self._started = False
        self._done = False
        self._usage: JSON | None = None
        self._chars = 0
        self._out: list[bytes] = []

    @property
    def usage(self) -> JSON | None:
        """The provider's token counts (Anthropic names), once it has reported them."""
        return self._usage

    def feed(self, data: bytes) -> bytes:
        """Upstream SSE bytes → Anthropic SSE bytes that can be sent now (maybe b"")."""
        if self._done:
            return b""
        if self._raw is not None:
            self._raw.append(data)
        self._read(lambda: self._parser.feed(data))
        return self._take()

    def finish(self) -> bytes:
        """Upstream ended: flush, and always leave the client a terminated message."""
        if self._done:
            return b""
        self._read(self._parser.close)
        if self._done:
            return self._take()
        if self._raw is not None:  # not one SSE event came
            self._plain_json(b"".join(self._raw))
        elif self._started:
            self._cut()
        else:
            self._fail("api_error", "upstream ended the stream without an answer")
        return self._take()

    def error(self, status: int, body: bytes) -> bytes:
        """Upstream refused the streamed request (non-2xx): one Anthropic `event: error`."""
        _, kind, message = errors.http_error(status, body)
        self._fail(kind, message)
        return self._take()

    def _read(self, parse: Callable[[], list[Event]]) -> None:
        """Translate the events `parse` (the parser's feed or close) returns. Past the
        parser's limit, what came before still counts, then the stream ends with an error."""
        try:
            events, too_large = parse(), None
        except SSEEventTooLarge as exc:
            events, too_large = exc.events, exc
        for name, payload in events:
            self._raw = None
            self._event(name, payload)
            if self._done:
                return
        if too_large is not None:
            self._raw = None
            self._fail("api_error", errors.stopped_reading(too_large))

    # -- for subclasses -------------------------------------------------------------------

    def _event(self, name: bytes, payload: bytes) -> None:
        """One upstream SSE event (name, data)."""
        raise NotImplementedError

    def _cut(self) -> None:
        """The stream ended without its own end event: close what is open, then stop."""
        raise NotImplementedError

    def _translate_whole(self, body: bytes) -> tuple[int, bytes]:
        """A whole JSON answer → (status, Anthropic JSON), as the module's translate_response."""
        raise NotImplementedError

    # -- Anthropic events, for subclasses -------------------------------------------------

    def _start_message(self, upstream: JSON) -> None:
        """`message_start`, with the upstream's id (or a hash of `upstream`, its first event)
        and the estimated input tokens until the provider counts them."""
        self._started = True
        if self._message_id is None:
            self._message_id = anthropic_message_id(upstream.get("id"), orjson.dumps(upstream))
        usage = {
            "input_tokens": self._input_estimate,
            "output_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        if self._usage:
            usage.update(self._usage, output_tokens=1)
        message = anthropic_message(self._message_id, self._model, [], usage)
        self._emit("message_start", {"type": "message_start", "message": message})

    def _block_start(self, index: int, kind: str, tool_id: str = "", name: str = "") -> None:
        """`content_block_start` of an empty text, thinking or tool_use block."""
        if kind == "text":
            start: JSON = {"type": "text", "text": ""}
        elif kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
        else:
            start = {"type": "tool_use", "id": tool_id, "name": name, "input": {}}
        self._emit(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": start},
        )

    def _block_delta(self, index: int, kind: str, text: str) -> None:
        """`content_block_delta` of text, thinking or a tool call's argument fragment; its
        characters count towards the output estimate."""
        self._chars += len(text)
        if kind == "text":
            delta: JSON = {"type": "text_delta", "text": text}
        elif kind == "thinking":
            delta = {"type": "thinking_delta", "thinking": text}
        else:
            delta = {"type": "input_json_delta", "partial_json": text}
        self._emit(
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": delta},
        )

    def _end_message(self, stop_reason: str, stop_sequence: str | None = None) -> None:
        """`message_delta` (stop reason, the provider's usage or an estimate) and
        `message_stop`: the stream is complete."""
        usage = self._usage or {"output_tokens": math.ceil(self._chars / 4)}
        stop = {"stop_reason": stop_reason, "stop_sequence": stop_sequence}
        self._emit("message_delta", {"type": "message_delta", "delta": stop, "usage": usage})
        self._emit("message_stop", {"type": "message_stop"})
        self._done = True

    def _take(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def _emit(self, name: str, payload: JSON) -> None:
        self._out.append(encode_event(name, payload))

    def _fail(self, kind: str, message: str) -> None:
        self._out.append(errors.error_event(kind, message))
        self._done = True

    def _plain_json(self, body: bytes) -> None:
        """The upstream ignored `stream` and answered with JSON: replay it as events."""
        if not body.strip():
            self._fail("api_error", "upstream ended the stream without an answer")
            return
        status, translated = self._translate_whole(body)
        message = orjson.loads(translated)
        if status != 200:
            self._fail(message["error"]["type"], message["error"]["message"])
            return
        self._started = True
        self._usage = message["usage"]
        self._out.append(message_events(message))
        self._done = True
