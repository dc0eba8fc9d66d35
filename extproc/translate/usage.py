"""Token counts read from an Anthropic-format answer as it passes, for the access log.

Sans-I/O like the translators: chunks in, counts out; the answer itself is not changed.
Streams carry usage in `message_start` (input, cache reads and writes) and `message_delta`
(cumulative counts: output so far, and on Anthropic's API the input and cache counts again);
a JSON answer carries it in its top-level `usage`. A later event's count replaces an earlier
one's.
"""

from __future__ import annotations

from typing import Any

import orjson

from extproc.translate.sse import SSEEventTooLarge, SSEParser

COUNTS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
"""Anthropic's usage fields: input apart from the cache, output, cache reads, cache writes."""
JSON_LIMIT = 4 * 1024 * 1024
"""A JSON answer larger than this is not kept just to count its tokens."""


class UsageReader:
    def __init__(self, streaming: bool):
        self._events = SSEParser() if streaming else None
        self._json = bytearray()
        self.counts: dict[str, int] = {}
        self._reading = True

    def feed(self, chunk: bytes) -> None:
        if self._events is None:
            if len(self._json) + len(chunk) <= JSON_LIMIT:
                self._json += chunk
            return
        if not self._reading:
            return
        try:
            events = self._events.feed(chunk)
        except SSEEventTooLarge:
            self._reading = False  # the answer passes on unchanged; only its counts are lost
            return
        for _, data in events:
            if b'"usage"' in data:
                self._take(data)

    def finish(self) -> dict[str, int]:
        if self._events is not None:
            for _, data in self._events.close() if self._reading else ():
                self._take(data)
        elif self._json:
            self._take(bytes(self._json))
        return self.counts

    def _take(self, data: bytes) -> None:
        try:
            event: Any = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(event, dict):
            return
        message = event.get("message")
        usage = event.get("usage") or (message.get("usage") if isinstance(message, dict) else None)
        if isinstance(usage, dict):
            for key in COUNTS:
                if isinstance(usage.get(key), int):
                    self.counts[key] = usage[key]
