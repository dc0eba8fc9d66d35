"""Chat Completions SSE → Anthropic SSE: the streamed answer, block by block."""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson

from extproc.translate import errors
from extproc.translate.anthropic_format import (
    BAD_ID_CHARS,
    JSON,
    MALFORMED,
    block_events,
    fallback_tool_id,
    tool_name,
)
from extproc.translate.openai_chat.response import (
    anthropic_stop,
    anthropic_usage,
    content_parts,
    reasoning_text,
    signature_block,
    thought_signature,
    translate_response,
)
from extproc.translate.stream import AnthropicStream


class _Block:
    """One Anthropic content block: buffered while it waits its turn, then streamed live."""

    __slots__ = ("closed", "index", "kind", "name", "parts", "signature", "tool_id")

    def __init__(self, kind: str, parts: list[str]) -> None:
        self.kind = kind  # "text" | "thinking" | "tool_use"
        self.parts = parts  # text waiting to be sent; for tools, every argument fragment
        self.tool_id = ""
        self.name = ""
        self.signature = ""  # a tool call's thought signature (Gemini), until it is sent
        self.index = -1  # Anthropic block index once started
        self.closed = False


class StreamTranslator(AnthropicStream):
    """Chat Completions SSE bytes in, Anthropic SSE bytes out; split points don't matter.

    Anthropic blocks are sequential (start, deltas, stop), while OpenAI may interleave the
    argument fragments of parallel tool calls. So one block is open at a time and streams
    live; anything else waits in `_pending` (in arrival order) until the open block may
    close: text and thinking blocks always may, a tool call once its arguments are a complete
    JSON object (no later fragment could then be valid). At finish_reason, or the end,
    everything left is flushed in order.
    """

    def __init__(
        self,
        *,
        model: str,
        message_id: str | None = None,
        input_tokens_estimate: int = 0,
        tool_names: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            model=model,
            message_id=message_id,
            input_tokens_estimate=input_tokens_estimate,
            tool_names=tool_names,
        )
        self._open: _Block | None = None
        self._pending: deque[_Block] = deque()
        self._tools: dict[int, _Block] = {}
        self._late_signatures: list[_Block] = []
        self._next_index = 0
        self._finish_reason: Any = None
        self._matched_stop: Any = None
        self._has_tools = False

    # -- events ---------------------------------------------------------------------------

    def _cut(self) -> None:
        self._end()

    def _translate_whole(self, body: bytes) -> tuple[int, bytes]:
        return translate_response(200, body, model=self._model, tool_names=self._tool_names)

    def _event(self, name: bytes, payload: bytes) -> None:
        if payload == b"[DONE]":
            if self._started:
                self._end()
            else:
                self._fail("api_error", "upstream ended the stream without an answer")
            return
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            if name == b"error":
                self._fail("api_error", payload.decode("utf-8", "replace"))
            return  # otherwise keep-alive noise from a proxy: nothing to translate
        err = errors.error_object(chunk)
        if err is None and name == b"error" and isinstance(chunk, dict):
            err = chunk
        if err is not None:
            self._fail(errors.type_of(err, 500), errors.message_of(err))
        elif isinstance(chunk, dict):
            try:
                self._chunk(chunk)
            except MALFORMED as exc:  # a field of the wrong type: end the answer visibly
                self._fail("api_error", f"malformed chunk from upstream: {exc}")

    def _chunk(self, chunk: JSON) -> None:
        usage = chunk.get("usage") or (chunk.get("x_groq") or {}).get("usage")
        if isinstance(usage, dict):
            self._usage = anthropic_usage(usage)
        if not self._started:
            self._start_message(chunk)
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = reasoning_text(delta)
            if reasoning:
                self._content("thinking", reasoning)
            for kind, text in content_parts(delta.get("content")):
                self._content(kind, text)
            if isinstance(delta.get("refusal"), str):
                self._content("text", delta["refusal"])
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    self._tool_fragment(call)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
                self._matched_stop = choice.get("stop_reason")
                self._flush()

    # -- blocks ---------------------------------------------------------------------------

    def _content(self, kind: str, text: str) -> None:
        if not text:
            return
        block = self._open
        if block is not None and block.kind == kind and not self._pending:
            self._delta(block, text)
            return
        last = self._pending[-1] if self._pending else None
        if last is not None and last.kind == kind:
            last.parts.append(text)
        else:
            self._pending.append(_Block(kind, [text]))
        self._advance()

    def _tool_fragment(self, call: JSON) -> None:
        function = call.get("function") or {}
        raw_id, name, args = call.get("id"), function.get("name"), function.get("arguments")
        tool_id = BAD_ID_CHARS.sub("_", raw_id) if isinstance(raw_id, str) else ""
        index = call.get("index")
        if not isinstance(index, int):
            index = self._guess_index(tool_id, name)
        block = self._tools.get(index)
        if block is not None and self._is_new_call(block, tool_id, name):
            # A new call at a used index (Ollama and some SGLang builds put every parallel
            # call at index 0): the old one keeps a key no fragment uses.
            self._tools[-len(self._tools) - 1] = block
            block = None
        if block is None:
            block = _Block("tool_use", [])
            self._tools[index] = block
            self._pending.append(block)
            self._has_tools = True
        signature = thought_signature(call)
        if signature:
            block.signature = signature
            if block.index >= 0:  # came after its block started: sent at the end
                self._late_signatures.append(block)
        if block.closed:
            return  # a fragment after a complete object: invalid anyway; drop it
        if not block.tool_id and tool_id:
            block.tool_id = tool_id
        if not block.name:
            block.name = tool_name(name, self._tool_names)
        if isinstance(args, str) and args:
            block.parts.append(args)
            if block is self._open:
                self._delta(block, args)
        self._advance()

    def _is_new_call(self, block: _Block, tool_id: str, name: Any) -> bool:
        """A different id at the same index starts a new call when it names its function or
        the call before it is complete; some servers change the id between a call's chunks."""
        if not tool_id or not block.tool_id or tool_id == block.tool_id:
            return False
        return bool(name) or (bool(block.parts) and self._may_close(block))

    def _guess_index(self, tool_id: str, name: Any) -> int:
        """Some providers omit `index`: a known id, else a new call when it brings an id or a
        name, else the latest call's continuation."""
        if tool_id:
            for index, block in self._tools.items():
                if block.tool_id == tool_id:
                    return index
        last = max(self._tools, default=-1)
        return last + 1 if tool_id or name or last < 0 else last

    def _advance(self) -> None:
        while self._pending and self._may_close(self._open):
            head = self._pending[0]
            if head.kind == "tool_use" and not head.name:
                return  # its block can't start before its name is known
            self._pending.popleft()
            self._close_open()
            self._start_block(head)

    @staticmethod
    def _may_close(block: _Block | None) -> bool:
        if block is None or block.kind != "tool_use":
            return True
        tail = next((p.rstrip() for p in reversed(block.parts) if p.strip()), "")
        if not tail.endswith("}"):
            return False
        try:
            return isinstance(orjson.loads("".join(block.parts)), dict)
        except orjson.JSONDecodeError:
            return False

    def _start_block(self, block: _Block) -> None:
        if block.kind == "tool_use":
            if not block.tool_id:
                block.tool_id = fallback_tool_id(str(self._message_id), self._next_index)
            if block.signature:
                self._signature(block)
        block.index = self._next_index
        self._next_index += 1
        self._block_start(block.index, block.kind, block.tool_id, block.name)
        self._open = block
        if block.parts:
            self._delta(block, "".join(block.parts))
            if block.kind != "tool_use":
                block.parts = []

    def _signature(self, call: _Block) -> None:
        """A whole thinking block carrying `call`'s thought signature, as its own index."""
        signed = signature_block(call.tool_id, call.signature)
        call.signature = ""
        index = self._next_index
        self._next_index += 1
        for name, payload in block_events(index, signed):
            self._emit(name, {"type": name, "index": index, **payload})

    def _delta(self, block: _Block, text: str) -> None:
        self._block_delta(block.index, block.kind, text)

    def _close_open(self) -> None:
        block = self._open
        if block is not None:
            self._emit("content_block_stop", {"type": "content_block_stop", "index": block.index})
            block.closed = True
            self._open = None

    def _flush(self) -> None:
        """Close the open block and send every waiting one, in arrival order."""
        self._close_open()
        while self._pending:
            self._start_block(self._pending.popleft())
            self._close_open()

    def _end(self) -> None:
        """message_delta (stop reason, final usage) and message_stop; deferred until [DONE]
        or the end because usage arrives in a chunk after finish_reason."""
        self._flush()
        for call in self._late_signatures:
            if call.signature:
                self._signature(call)
        self._end_message(*anthropic_stop(self._finish_reason, self._matched_stop, self._has_tools))
