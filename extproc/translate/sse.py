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
"""The longest line the parser keeps: one Chat Completions chunk is a few hundred bytes, a
whole JSON answer sent instead of a stream well under this."""


class SSEEventTooLarge(ValueError):
    """An upstream line grew past the parser's limit: the stream can't be read safely."""


class SSEParser:
    """Incremental parser for the `text/event-stream` format (WHATWG HTML, 9.2.6).

    Lines end in \\n, \\r\\n or \\r; `data:` may or may not be followed by one space; several
    `data:` lines join with \\n; lines starting with `:` are comments; a blank line ends an event.

    An unfinished line is kept as the pieces it came in and joined once, when its end
    arrives: a line fed a few bytes at a time costs time linear in its length.
    """

    __slots__ = ("_data", "_name", "_size", "_tail", "max_event")

    def __init__(self, max_event: int = EVENT_MAX) -> None:
        self._tail: list[bytes] = []
        self._size = 0
        self._data: list[bytes] = []
        self._name = b""
        self.max_event = max_event

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse what can be parsed now; keep the unfinished line for the next call.

        Raises SSEEventTooLarge when a line is longer than `max_event`.
        """
        held_cr = bool(self._tail) and self._tail[-1].endswith(b"\r")
        if not held_cr and b"\n" not in chunk and b"\r" not in chunk:
            self._hold(chunk)
            return []
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
        self._hold(tail)
        events: list[Event] = []
        for line in lines:
            self._line(line, events)
        return events

    def close(self) -> list[Event]:
        """End of stream: the last line and event count even without their terminators."""
        events: list[Event] = []
        last = b"".join(self._tail).rstrip(b"\r")
        self._tail.clear()
        self._size = 0
        if last:
            self._line(last, events)
        self._line(b"", events)
        return events

    def _hold(self, piece: bytes) -> None:
        if not piece:
            return
        self._size += len(piece)
        if self._size > self.max_event:
            raise SSEEventTooLarge(f"the provider sent a line longer than {self.max_event} bytes")
        self._tail.append(piece)

    def _line(self, line: bytes, events: list[Event]) -> None:
        if len(line) > self.max_event:
            raise SSEEventTooLarge(f"the provider sent a line longer than {self.max_event} bytes")
        if not line:
            if self._data:
                events.append((self._name, b"\n".join(self._data)))
                self._data = []
            self._name = b""
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


def encode_event(name: str, payload: dict[str, Any]) -> bytes:
    """One Anthropic SSE event: `event: NAME`, `data: JSON`, blank line."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
