"""The response side of a translated exchange, free of Envoy types.

Decides, from the upstream's status and headers, whether the body is an SSE
stream to translate chunk by chunk or a JSON document to translate whole, and
undoes a gzip content-encoding the upstream applied despite being asked not to,
up to a limit: a few MB of gzip can inflate to gigabytes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import orjson

from extproc.config.settings import Listener
from extproc.errors import GatewayError
from extproc.translate.errors import error_event, stopped_reading
from extproc.translate.stream import AnthropicStream
from extproc.translate.translator import Translator
from extproc.translate.usage import COUNTS

INFLATED_MAX = 64 * 1024 * 1024
"""The most a compressed answer may inflate to. A streamed answer of 64k tokens in Chat
Completions chunks is about 16 MB; inflating the whole limit takes about 0.3 s of a thread."""


class AnswerTooLarge(ValueError):
    """A compressed answer inflates past INFLATED_MAX, or a whole one past `whole_max`."""


@dataclass
class ResponseTranslation:
    translator: Translator
    """The exchange's translator (translator.translator_for), which translates the answer."""
    streaming_requested: bool
    whole_max: int = Listener.max_body_bytes
    """The most a whole (not streamed) answer may hold once inflated: the exchange passes
    listener.max_body_bytes, the most Envoy buffers of an uncompressed one, and about the
    most it takes back from the sidecar."""
    status: int = 200
    """The upstream's status."""
    client_status: int = 200
    """The status the client should see: the upstream's, unless the translated answer says
    otherwise (a 2xx body that holds an error object, or isn't JSON)."""
    streaming: bool = False
    _decoder: zlib._Decompress | None = None  # type: ignore[name-defined]
    _stream: AnthropicStream | None = None
    _buffer: bytearray = field(default_factory=bytearray)
    _usage: dict[str, int] | None = None
    _inflated: int = 0
    _failed: bool = False

    @property
    def compressed(self) -> bool:
        """Whether the answer is inflated here (work worth moving off the event loop)."""
        return self._decoder is not None

    def on_headers(self, status: int, encoding: str) -> dict[str, str]:
        """Note the upstream's answer; returns the headers the client should see instead."""
        self.status = self.client_status = status
        # A streamed request gets SSE back even when the upstream answered it with JSON:
        # the translator replays such an answer as events. Errors stay JSON with their status.
        self.streaming = self.streaming_requested and status < 300
        if encoding.strip().lower() in ("gzip", "x-gzip", "deflate"):
            # wbits 47 accepts both gzip and zlib framing.
            self._decoder = zlib.decompressobj(wbits=47)
        if self.streaming:
            self._stream = self.translator.stream()
            return {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
        return {"content-type": "application/json"}

    def on_body(self, chunk: bytes, end: bool) -> bytes:
        """Translated bytes to send to the client for this upstream chunk.

        An answer that can't be read safely ends a stream with `event: error`; before a
        JSON answer it raises GatewayError (502: the provider's answer is at fault).
        """
        if self._failed:
            return b""
        try:
            if self._decoder is not None:
                chunk = self._inflate(self._decoder, chunk, end)
            if self._stream is not None:
                return self._stream.feed(chunk) + (self._stream.finish() if end else b"")
            self._buffer += chunk
            if len(self._buffer) > self.whole_max:
                limit = f"{self.whole_max} bytes (listener.max_body_bytes)"
                raise AnswerTooLarge(f"it is larger than {limit}")
        except AnswerTooLarge as exc:
            self._failed = True
            self._buffer = bytearray()
            message = stopped_reading(exc)
            if self._stream is None:
                raise GatewayError("api_error", message, status=502) from None
            return error_event("api_error", message)
        if not end:
            return b""
        self.client_status, body = self.translator.response(self.status, bytes(self._buffer))
        self._usage = orjson.loads(body).get("usage")
        return body

    def _inflate(self, decoder: zlib._Decompress, chunk: bytes, end: bool) -> bytes:  # type: ignore[name-defined]
        """Inflate at most what is left of INFLATED_MAX (plus one byte, to notice more); of a
        whole answer, no more than it may hold (`whole_max` says so in its own words)."""
        limit = INFLATED_MAX if self._stream is not None else min(INFLATED_MAX, self.whole_max)
        out = decoder.decompress(chunk, limit - self._inflated + 1)
        if end and not decoder.unconsumed_tail:
            out += decoder.flush()
        self._inflated += len(out)
        if self._inflated > INFLATED_MAX:
            raise AnswerTooLarge(f"it inflates to more than {INFLATED_MAX} bytes")
        return out

    def usage(self) -> dict[str, int]:
        """Token counts for the access log, once the answer is complete (empty if unknown)."""
        usage = self._stream.usage if self._stream is not None else self._usage
        if not isinstance(usage, dict):
            return {}
        return {k: usage[k] for k in COUNTS if k in usage}
