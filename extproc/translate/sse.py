"""Server-sent events, sans-I/O: an incremental parser and the Anthropic event serializer.

Upstream bytes arrive in arbitrary pieces (Envoy hands us whatever the socket read), so the
parser keeps only the unfinished line between calls. Line terminators are ASCII, so a UTF-8
character split across pieces is never cut: data stays bytes until a whole event is parsed.
"""

from __future__ import annotations

from typing import Any

import orjson

Event = tuple[bytes, bytes]
"""(event name, data): the name is b"" when the event has no `event:` field."""


EVENT_MAX = 4 * 1024 * 1024
"""The most bytes the parser reads without completing an event: one line, the lines of one
event, or a body that is no event stream at all (a whole JSON answer, which a stream
translator keeps until it knows). One Chat Completions chunk is a few hundred bytes, a whole
JSON answer sent instead of a stream well under this."""


class SSEEventTooLarge(ValueError):
    """The provider sent more than the parser's limit without completing an event: the
    stream can't be read safely. `events` are those completed before it, in this call."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the provider sent more than {limit} bytes without completing an event")
        self.events: list[Event] = []


class SSEParser:
    """Incremental parser for the `text/event-stream` format (WHATWG HTML, 9.2.6).

    Lines end in \\n, \\r\\n or \\r; `data:` may or may not be followed by one space; several
    `data:` lines join with \\n; lines starting with `:` are comments; a blank line ends an event.

    An unfinished line is kept as the pieces it came in and joined once, when its end
    arrives: a line fed a few bytes at a time costs time linear in its length.

    Every byte since the last complete event counts towards `max_event`, line by line (a
    terminator as one byte), the unfinished line included: a line's pieces never count more
    than the whole line, so the limit is passed at the same line however the bytes are cut.
    """

    __slots__ = ("_data", "_name", "_since", "_size", "_tail", "max_event")

    def __init__(self, max_event: int = EVENT_MAX) -> None:
        self._tail: list[bytes] = []
        self._size = 0
        self._since = 0  # bytes of the complete lines read since the last event
        self._data: list[bytes] = []
        self._name = b""
        self.max_event = max_event

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse what can be parsed now; keep the unfinished line for the next call.

        Raises SSEEventTooLarge past `max_event` bytes without a complete event, and forgets
        what it held.
        """
        events: list[Event] = []
        try:
            self._feed(chunk, events)
        except SSEEventTooLarge as exc:
            self._forget()
            exc.events = events
            raise
        return events

    def close(self) -> list[Event]:
        """End of stream: the last line and event count even without their terminators."""
        events: list[Event] = []
        last = b"".join(self._tail).rstrip(b"\r")
        self._tail.clear()
        self._size = 0
        try:
            if last:
                self._line(last, events)
            self._dispatch(events)
        except SSEEventTooLarge as exc:
            self._forget()
            exc.events = events
            raise
        return events

    def _feed(self, chunk: bytes, events: list[Event]) -> None:
        held_cr = bool(self._tail) and self._tail[-1].endswith(b"\r")
        if not held_cr and b"\n" not in chunk and b"\r" not in chunk:
            self._hold(chunk)
            return
        buf = b"".join((*self._tail, chunk)) if self._tail else chunk
        if b"\r" in buf:
            # A trailing \r may be the first half of \r\n: decide when the next byte comes.
            held = buf.endswith(b"\r")
            if held:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            lines = buf.split(b"\n")
            tail = lines.pop() + (b"\r" if held else b"")
        else:
            lines = buf.split(b"\n")
            tail = lines.pop()
        self._tail.clear()
        self._size = 0
        for line in lines:
            self._line(line, events)
        self._hold(tail)

    def _hold(self, piece: bytes) -> None:
        if not piece:
            return
        self._size += len(piece)
        # A held \r is a terminator not yet counted (it may end an event, which counts 0).
        if self._since + self._size - piece.endswith(b"\r") > self.max_event:
            raise SSEEventTooLarge(self.max_event)
        self._tail.append(piece)

    def _forget(self) -> None:
        """Drop what the parser held: the stream is abandoned."""
        self._tail.clear()
        self._size = self._since = 0
        self._data = []
        self._name = b""

    def _line(self, line: bytes, events: list[Event]) -> None:
        if line or not self._data:  # every line but the one that completes an event counts
            self._since += len(line) + 1
            if self._since > self.max_event:
                raise SSEEventTooLarge(self.max_event)
        if not line:
            self._dispatch(events)
            return
        colon = line.find(b":")
        if colon == 0:
            return  # comment (keep-alive)
        if colon < 0:
            field, value = line, b""
        else:
            field, value = line[:colon], line[colon + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._name = value

    def _dispatch(self, events: list[Event]) -> None:
        """A blank line, or the end of the stream, ends an event: sent if it has data."""
        if self._data:
            events.append((self._name, b"\n".join(self._data)))
            self._data = []
            self._since = 0
        self._name = b""


def encode_event(name: str, payload: dict[str, Any]) -> bytes:
    """One Anthropic SSE event: `event: NAME`, `data: JSON`, blank line."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
