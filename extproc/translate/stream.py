"""What both stream translators share: upstream SSE bytes in, Anthropic SSE bytes out.

A subclass reads its provider's events (`_event`), says how a stream that simply ends is
closed (`_cut`), and translates a whole JSON answer (`_translate_whole`) for upstreams
that ignore `stream`. This class feeds the parser, collects the output, and makes sure the
client always gets a terminated message or one `event: error`.
"""

from __future__ import annotations

import orjson

from extproc.translate import errors
from extproc.translate.anthropic_format import JSON, message_events
from extproc.translate.sse import SSEParser, encode_event


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
        self._raw: list[bytes] | None = []  # the body, kept until an SSE event shows up
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
        for name, payload in self._parser.feed(data):
            self._raw = None
            self._event(name, payload)
            if self._done:
                break
        return self._take()

    def finish(self) -> bytes:
        """Upstream ended: flush, and always leave the client a terminated message."""
        if self._done:
            return b""
        for name, payload in self._parser.close():
            self._raw = None
            self._event(name, payload)
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
