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


class SSEParser:
    """Incremental parser for the `text/event-stream` format (WHATWG HTML, 9.2.6).

    Lines end in \\n, \\r\\n or \\r; `data:` may or may not be followed by one space; several
    `data:` lines join with \\n; lines starting with `:` are comments; a blank line ends an event.
    """

    __slots__ = ("_data", "_name", "_tail")

    def __init__(self) -> None:
        self._tail = b""
        self._data: list[bytes] = []
        self._name = b""

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse what can be parsed now; keep the unfinished line for the next call."""
        buf = self._tail + chunk
        if b"\r" in buf:
            # A trailing \r may be the first half of \r\n: decide when the next byte comes.
            held = buf.endswith(b"\r")
            if held:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            lines = buf.split(b"\n")
            self._tail = lines.pop() + (b"\r" if held else b"")
        else:
            lines = buf.split(b"\n")
            self._tail = lines.pop()
        events: list[Event] = []
        for line in lines:
            self._line(line, events)
        return events

    def close(self) -> list[Event]:
        """End of stream: the last line and event count even without their terminators."""
        events: list[Event] = []
        last = self._tail.rstrip(b"\r")
        self._tail = b""
        if last:
            self._line(last, events)
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[Event]) -> None:
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
