"""Anthropic Messages ⇄ OpenAI Chat Completions, sans-I/O.

`translate_request` turns a Messages body into a Chat Completions body; `translate_response`
and `StreamTranslator` turn the answer (JSON or SSE) back into what Claude Code expects.
Every rule is listed, with its reason, in docs/translation.md.
"""

from __future__ import annotations

import hashlib
import math
import re
import string
from collections import deque
from typing import Any

import orjson

from extproc.translate import errors
from extproc.translate.sse import SSEParser, encode_event

JSON = dict[str, Any]


class TranslationError(Exception):
    """The request can't be expressed in Chat Completions; answer the client with a 400."""

    def __init__(self, message: str, error_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


# ---------------------------------------------------------------------------------------------
# Request: Anthropic Messages → Chat Completions
# ---------------------------------------------------------------------------------------------

_BILLING_HEADER = "x-anthropic-billing-header:"
_USER_MAX = 64
_STOP_MAX = 4
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high", "xhigh": "high"}
# Blocks with no Chat Completions meaning: reasoning (its signature only means something to
# Anthropic) and server-side tool traffic (ran at Anthropic; its results end in *_tool_result).
_DROPPED_BLOCKS = {
    "thinking",
    "redacted_thinking",
    "server_tool_use",
    "mcp_tool_use",
    "container_upload",
}


def translate_request(
    body: JSON,
    *,
    model: str,
    max_tokens_cap: int | None = None,
    supports_reasoning: bool = False,
    short_tool_ids: bool = False,
) -> bytes:
    """Anthropic Messages body (parsed) → Chat Completions JSON bytes for `model`.

    Only fields with a Chat Completions meaning are carried; everything else is dropped, so
    strict providers never see Anthropic-only fields. `short_tool_ids`: the provider accepts
    only 9-character alphanumeric tool-call ids (Mistral).
    """
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list):
        raise TranslationError("messages: field required (a list)")
    system = _system_texts(body.get("system"))
    messages: list[JSON] = []
    for i, message in enumerate(raw_messages):
        if not isinstance(message, dict):
            raise TranslationError(f"messages.{i}: must be an object")
        role = message.get("role")
        content = message.get("content")
        if role == "system":
            system.append("\n\n".join(_texts(content, f"messages.{i}.content")))
        elif role == "user":
            messages.extend(_user_messages(_blocks(content, i), i))
        elif role == "assistant":
            messages.extend(_assistant_messages(_blocks(content, i), i))
        else:
            raise TranslationError(f"messages.{i}.role: unexpected value {role!r}")
    system = [s for s in system if s]
    if system:
        messages.insert(0, {"role": "system", "content": "\n\n".join(system)})
    if short_tool_ids:
        _shorten_tool_ids(messages)

    out: JSON = {"model": model, "messages": messages}
    tools = [_tool(t) for t in _list(body.get("tools")) if _is_custom_tool(t)]
    if tools:
        out["tools"] = tools
        out.update(_tool_choice(body.get("tool_choice"), {t["function"]["name"] for t in tools}))
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int):
        out["max_tokens"] = min(max_tokens, max_tokens_cap) if max_tokens_cap else max_tokens
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    stop = body.get("stop_sequences")
    if isinstance(stop, list) and stop:
        out["stop"] = list(stop)[:_STOP_MAX]
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    effort = _reasoning_effort(body) if supports_reasoning else None
    if effort:
        out["reasoning_effort"] = effort
    response_format = _response_format(body)
    if response_format:
        out["response_format"] = response_format
    user = _user(body.get("metadata"))
    if user:
        out["user"] = user
    try:
        return orjson.dumps(out)
    except orjson.JSONEncodeError as exc:
        raise TranslationError(f"request can't be encoded as JSON: {exc}") from exc


_ALNUM = string.ascii_letters + string.digits


def short_tool_id(tool_id: str) -> str:
    """A 9-character alphanumeric id for `tool_id`, the same every time, so a call and its
    result still match; ids already in that form (the provider's own) are kept."""
    if len(tool_id) == 9 and tool_id.isascii() and tool_id.isalnum():
        return tool_id
    digest = hashlib.sha256(tool_id.encode()).digest()
    return "".join(_ALNUM[byte % len(_ALNUM)] for byte in digest[:9])


def _shorten_tool_ids(messages: list[JSON]) -> None:
    for message in messages:
        for call in message.get("tool_calls") or []:
            call["id"] = short_tool_id(call["id"])
        if message.get("role") == "tool":
            message["tool_call_id"] = short_tool_id(message["tool_call_id"])


def _system_texts(system: Any) -> list[str]:
    """Top-level system prompt as texts, without Claude Code's per-request billing line.

    The billing block changes on every request; leaving it first would defeat the prefix
    caches of OpenAI-style providers for the whole (80 KB) prompt.
    """
    if system is None:
        return []
    return [t for t in _texts(system, "system") if not t.startswith(_BILLING_HEADER)]


def _texts(content: Any, where: str) -> list[str]:
    """A string, or the texts of a list of text blocks (other block kinds are ignored)."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        texts = [b.get("text") for b in content if b.get("type") == "text"]
        if all(isinstance(t, str) for t in texts):
            return texts
    raise TranslationError(f"{where}: must be a string or a list of text blocks")


def _blocks(content: Any, i: int) -> list[JSON]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        return content
    raise TranslationError(f"messages.{i}.content: must be a string or a list of blocks")


def _user_messages(blocks: list[JSON], i: int) -> list[JSON]:
    """Tool results first (as `tool` messages, answering the previous assistant turn), then
    the rest of the turn as one user message."""
    tools: list[JSON] = []
    parts: list[JSON] = []
    for j, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "tool_result":
            tools.append(_tool_message(block, f"messages.{i}.content.{j}"))
        elif kind == "image":
            parts.append(_image_part(block, f"messages.{i}.content.{j}"))
        else:
            text = _block_text(block, f"messages.{i}.content.{j}")
            if text is not None:
                parts.append({"type": "text", "text": text})
    if not parts:
        return tools
    if all(p["type"] == "text" for p in parts):
        return [*tools, {"role": "user", "content": "\n\n".join(p["text"] for p in parts)}]
    return [*tools, {"role": "user", "content": parts}]


def _assistant_messages(blocks: list[JSON], i: int) -> list[JSON]:
    """Text and tool calls of one assistant turn; a turn left empty (thinking only) is dropped."""
    texts: list[str] = []
    calls: list[JSON] = []
    for j, block in enumerate(blocks):
        if block.get("type") == "tool_use":
            calls.append(_tool_call(block, f"messages.{i}.content.{j}"))
        else:
            text = _block_text(block, f"messages.{i}.content.{j}")
            if text is not None:
                texts.append(text)
    if not calls:
        return [{"role": "assistant", "content": "\n\n".join(texts)}] if texts else []
    content = "\n\n".join(texts) if texts else None
    return [{"role": "assistant", "content": content, "tool_calls": calls}]


def _block_text(block: JSON, where: str) -> str | None:
    """Text of a block that reads as text; None for blocks dropped from history."""
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str):
            raise TranslationError(f"{where}.text: must be a string")
        return text
    if kind == "document":
        return _document_text(block)
    if kind == "compaction":  # a summary of earlier context; None marks a failed compaction
        content = block.get("content")
        return content if isinstance(content, str) else None
    if kind == "search_result":
        texts = [c.get("text", "") for c in _list(block.get("content")) if isinstance(c, dict)]
        return "\n\n".join([str(block.get("title", "")), *texts]).strip()
    if isinstance(kind, str) and (kind in _DROPPED_BLOCKS or kind.endswith("_tool_result")):
        return None
    raise TranslationError(f"{where}: content block type {kind!r} has no Chat Completions form")


def _document_text(block: JSON) -> str:
    """Plain-text documents read as their text; other kinds (PDF) can't be sent portably."""
    source = _dict(block.get("source"))
    if source.get("type") == "text" and isinstance(source.get("data"), str):
        return source["data"]
    if source.get("type") == "content" and isinstance(source.get("content"), list):
        return "\n\n".join(c.get("text", "") for c in source["content"] if isinstance(c, dict))
    return f"[document: {source.get('media_type') or source.get('type') or 'unknown'}]"


def _image_part(block: JSON, where: str) -> JSON:
    source = _dict(block.get("source"))
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url":
        url = source.get("url")
    else:
        raise TranslationError(f"{where}.source: image source {source.get('type')!r} unsupported")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_message(block: JSON, where: str) -> JSON:
    """A tool_result as a `tool` message; images become "[image]" (tool messages are text)."""
    content = block.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts = []
        for k, item in enumerate(content):
            if not isinstance(item, dict):
                raise TranslationError(f"{where}.content.{k}: must be an object")
            if item.get("type") == "image":
                texts.append("[image]")
            elif item.get("type") == "tool_reference":
                texts.append(f"[tool: {item.get('tool_name', '')}]")
            else:
                piece = _block_text(item, f"{where}.content.{k}")
                if piece is not None:
                    texts.append(piece)
        text = "\n\n".join(texts)
    else:
        raise TranslationError(f"{where}.content: must be a string or a list of blocks")
    if block.get("is_error"):
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": text}


def _tool_call(block: JSON, where: str) -> JSON:
    try:
        arguments = orjson.dumps(block.get("input", {})).decode()
    except orjson.JSONEncodeError as exc:
        raise TranslationError(f"{where}.input: {exc}") from exc
    return {
        "id": str(block.get("id", "")),
        "type": "function",
        "function": {"name": str(block.get("name", "")), "arguments": arguments},
    }


def _is_custom_tool(tool: Any) -> bool:
    """Server tools (web search, bash, text editor, ...) run at Anthropic; others can't."""
    return isinstance(tool, dict) and tool.get("type") in (None, "custom")


def _tool(tool: JSON) -> JSON:
    if not isinstance(tool.get("name"), str):
        raise TranslationError("tools: every tool needs a name")
    function: JSON = {"name": tool["name"]}
    if tool.get("description"):
        function["description"] = tool["description"]
    function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


def _tool_choice(choice: Any, names: set[str]) -> JSON:
    if not isinstance(choice, dict):
        return {}
    out: JSON = {}
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str) and choice["name"] in names:
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    if choice.get("disable_parallel_tool_use") and kind != "none":
        out["parallel_tool_calls"] = False
    return out


def _reasoning_effort(body: JSON) -> str | None:
    thinking = body.get("thinking")
    if not isinstance(thinking, dict):
        return None
    if thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        budget = budget if isinstance(budget, int | float) else 0
        return "low" if budget < 4096 else "medium" if budget < 16384 else "high"
    if thinking.get("type") == "adaptive":
        effort = _output_config(body).get("effort")
        return _EFFORTS.get(effort, "medium") if isinstance(effort, str) else "medium"
    return None


def _output_config(body: JSON) -> JSON:
    return _dict(body.get("output_config"))


def _dict(value: Any) -> JSON:
    """An optional object field; a client's wrongly typed one reads as absent."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _response_format(body: JSON) -> JSON | None:
    """Structured output (`output_config.format`, or the older beta `output_format`)."""
    fmt = _output_config(body).get("format") or body.get("output_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = fmt.get("schema") or {}
        return {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": False},
        }
    return None


def _user(metadata: Any) -> str | None:
    """metadata.user_id → `user` (≤ 64 chars; Claude Code's is a long JSON string: hash it)."""
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user_id, str) or not user_id:
        return None
    if len(user_id) <= _USER_MAX:
        return user_id
    return hashlib.sha256(user_id.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Response: Chat Completions → Anthropic Messages (shared by JSON and SSE)
# ---------------------------------------------------------------------------------------------

_FINISH = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "end_turn",
}
_BAD_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def _stop(finish_reason: Any, matched: Any, has_tools: bool) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence). vLLM names the matched stop string in `stop_reason`;
    some providers say "stop" for an answer that calls tools."""
    if finish_reason == "stop" and isinstance(matched, str) and matched:
        return "stop_sequence", matched
    reason = (
        _FINISH.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"
    )
    if has_tools and reason == "end_turn":
        reason = "tool_use"
    return reason, None


def _usage(usage: Any) -> JSON | None:
    """OpenAI usage → Anthropic usage; cached prompt tokens are counted apart, as Anthropic does."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens") or 0
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {
        "input_tokens": max(prompt - cached, 0),
        "output_tokens": usage.get("completion_tokens") or 0,
        "cache_read_input_tokens": cached,
    }


def _tool_id(raw: Any, message_id: str, n: int) -> str:
    """Keep upstream ids, but only in the charset Anthropic accepts for tool_use ids, so the
    history stays valid if a later turn is routed to Anthropic."""
    if isinstance(raw, str) and raw:
        return _BAD_ID_CHARS.sub("_", raw)
    return _fallback_tool_id(message_id, n)


def _fallback_tool_id(message_id: str, n: int) -> str:
    """An id for a call that came without one, unique across the conversation."""
    return _BAD_ID_CHARS.sub("_", f"toolu_{message_id.removeprefix('msg_')}_{n}")


def _message_id(raw: Any, fallback: bytes) -> str:
    if isinstance(raw, str) and raw:
        return "msg_" + _BAD_ID_CHARS.sub("_", raw)
    return "msg_" + hashlib.blake2b(fallback, digest_size=12).hexdigest()


def _content_parts(content: Any) -> list[tuple[str, str]]:
    """(kind, text) pieces of a content field: a string, or Mistral-style typed chunks."""
    if isinstance(content, str):
        return [("text", content)] if content else []
    out: list[tuple[str, str]] = []
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            out.append(("text", part["text"]))
        elif part.get("type") == "thinking":
            inner = part.get("thinking")
            if isinstance(inner, list):
                inner = "".join(i.get("text", "") for i in inner if isinstance(i, dict))
            if isinstance(inner, str):
                out.append(("thinking", inner))
    return [p for p in out if p[1]]


def _reasoning(message: JSON) -> str:
    """DeepSeek/vLLM say `reasoning_content`; OpenRouter/Ollama/newer vLLM say `reasoning`."""
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _tool_input(arguments: Any) -> JSON:
    """Arguments are a JSON string; anything unparseable becomes {} (documented)."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = orjson.loads(arguments or "{}")
    except (orjson.JSONDecodeError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


_MALFORMED = (TypeError, AttributeError, ValueError, KeyError)
"""What reading a provider's answer raises when one of its fields has an unexpected type."""


def translate_response(status: int, body: bytes, *, model: str) -> tuple[int, bytes]:
    """A non-streamed upstream answer → (status for the client, Anthropic JSON bytes)."""
    if not 200 <= status < 300:
        client_status, kind, message = errors.http_error(status, body)
        return client_status, errors.error_body(kind, message)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        message = errors.upstream_message(status, body)
        return 502, errors.error_body("api_error", f"invalid JSON from upstream: {message}")
    err = errors.error_object(data)
    if err is not None:
        client_status = errors.status_of(err, 502)
        return client_status, errors.error_body(errors.type_of(err, 502), errors.message_of(err))
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return 502, errors.error_body("api_error", "upstream answer has no choices")
    try:
        return status, orjson.dumps(_message(data, choices[0], model, body))
    except _MALFORMED as exc:
        return 502, errors.error_body("api_error", f"malformed answer from upstream: {exc}")


def _message(data: JSON, choice: JSON, model: str, body: bytes) -> JSON:
    message = choice.get("message") or {}
    content: list[JSON] = []
    reasoning = _reasoning(message)
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    for kind, text in _content_parts(message.get("content")):
        if kind == "thinking":
            content.append({"type": "thinking", "thinking": text, "signature": ""})
        else:
            content.append({"type": "text", "text": text})
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        content.append({"type": "text", "text": message["refusal"]})
    message_id = _message_id(data.get("id"), body)
    calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
    for n, call in enumerate(calls):
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": _tool_id(call.get("id"), message_id, n),
                "name": function.get("name") or "",
                "input": _tool_input(function.get("arguments")),
            }
        )
    stop_reason, stop_sequence = _stop(
        choice.get("finish_reason"), choice.get("stop_reason"), bool(calls)
    )
    usage = _usage(data.get("usage")) or {"input_tokens": 0, "output_tokens": 0}
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, **usage},
    }


# ---------------------------------------------------------------------------------------------
# Stream: Chat Completions SSE → Anthropic SSE
# ---------------------------------------------------------------------------------------------


class _Block:
    """One Anthropic content block: buffered while it waits its turn, then streamed live."""

    __slots__ = ("closed", "index", "kind", "name", "parts", "tool_id")

    def __init__(self, kind: str, parts: list[str]) -> None:
        self.kind = kind  # "text" | "thinking" | "tool_use"
        self.parts = parts  # text waiting to be sent; for tools, every argument fragment
        self.tool_id = ""
        self.name = ""
        self.index = -1  # Anthropic block index once started
        self.closed = False


class StreamTranslator:
    """Chat Completions SSE bytes in, Anthropic SSE bytes out; split points don't matter.

    Anthropic blocks are sequential (start, deltas, stop), while OpenAI may interleave the
    argument fragments of parallel tool calls. So one block is open at a time and streams
    live; anything else waits in `_pending` (in arrival order) until the open block may
    close: text and thinking blocks always may, a tool call once its arguments are a complete
    JSON object (no later fragment could then be valid). At finish_reason, or the end,
    everything left is flushed in order.
    """

    def __init__(
        self, *, model: str, message_id: str | None = None, input_tokens_estimate: int = 0
    ) -> None:
        self._model = model
        self._message_id = message_id
        self._input_estimate = input_tokens_estimate
        self._parser = SSEParser()
        self._raw: list[bytes] | None = []  # the body, kept until an SSE event shows up
        self._started = False
        self._done = False
        self._open: _Block | None = None
        self._pending: deque[_Block] = deque()
        self._tools: dict[int, _Block] = {}
        self._next_index = 0
        self._finish_reason: Any = None
        self._matched_stop: Any = None
        self._has_tools = False
        self._usage: JSON | None = None
        self._chars = 0
        self._out: list[bytes] = []

    # -- public ---------------------------------------------------------------------------

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
            self._event(name, payload)
            if self._done:
                break
        return self._take()

    def finish(self) -> bytes:
        """Upstream ended: flush, and always leave the client a terminated message."""
        if self._done:
            return b""
        for name, payload in self._parser.close():
            self._event(name, payload)
            if self._done:
                return self._take()
        if self._raw is not None:  # not one SSE event came
            self._plain_json(b"".join(self._raw))
        elif self._started:
            self._end()
        else:
            self._fail("api_error", "upstream ended the stream without an answer")
        return self._take()

    def error(self, status: int, body: bytes) -> bytes:
        """Upstream refused the streamed request (non-2xx): one Anthropic `event: error`."""
        _, kind, message = errors.http_error(status, body)
        self._fail(kind, message)
        return self._take()

    # -- events ---------------------------------------------------------------------------

    def _take(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def _emit(self, name: str, payload: JSON) -> None:
        self._out.append(encode_event(name, payload))

    def _fail(self, kind: str, message: str) -> None:
        self._out.append(errors.error_event(kind, message))
        self._done = True

    def _event(self, name: bytes, payload: bytes) -> None:
        self._raw = None
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
            except _MALFORMED as exc:  # a field of the wrong type: end the answer visibly
                self._fail("api_error", f"malformed chunk from upstream: {exc}")

    def _chunk(self, chunk: JSON) -> None:
        usage = chunk.get("usage") or (chunk.get("x_groq") or {}).get("usage")
        if isinstance(usage, dict):
            self._usage = _usage(usage)
        if not self._started:
            self._start_message(chunk)
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = _reasoning(delta)
            if reasoning:
                self._content("thinking", reasoning)
            for kind, text in _content_parts(delta.get("content")):
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

    def _start_message(self, chunk: JSON) -> None:
        self._started = True
        if self._message_id is None:
            self._message_id = _message_id(chunk.get("id"), orjson.dumps(chunk))
        usage = {
            "input_tokens": self._input_estimate,
            "output_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        if self._usage:
            usage.update(self._usage, output_tokens=1)
        message = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        self._emit("message_start", {"type": "message_start", "message": message})

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
        index = call.get("index")
        if not isinstance(index, int):
            index = self._guess_index(raw_id, name)
        block = self._tools.get(index)
        if block is None:
            block = _Block("tool_use", [])
            self._tools[index] = block
            self._pending.append(block)
            self._has_tools = True
        if block.closed:
            return  # a fragment after a complete object: invalid anyway; drop it
        if not block.tool_id and isinstance(raw_id, str) and raw_id:
            block.tool_id = _BAD_ID_CHARS.sub("_", raw_id)
        if not block.name and isinstance(name, str):
            block.name = name
        if isinstance(args, str) and args:
            block.parts.append(args)
            if block is self._open:
                self._delta(block, args)
        self._advance()

    def _guess_index(self, raw_id: Any, name: Any) -> int:
        """Some providers omit `index`: a known id, else a new call when it brings an id or a
        name, else the latest call's continuation."""
        if isinstance(raw_id, str) and raw_id:
            wanted = _BAD_ID_CHARS.sub("_", raw_id)
            for index, block in self._tools.items():
                if block.tool_id == wanted:
                    return index
        last = max(self._tools, default=-1)
        return last + 1 if raw_id or name or last < 0 else last

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
        block.index = self._next_index
        self._next_index += 1
        if block.kind == "text":
            start: JSON = {"type": "text", "text": ""}
        elif block.kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
        else:
            if not block.tool_id:
                block.tool_id = _fallback_tool_id(str(self._message_id), block.index)
            start = {"type": "tool_use", "id": block.tool_id, "name": block.name, "input": {}}
        self._emit(
            "content_block_start",
            {"type": "content_block_start", "index": block.index, "content_block": start},
        )
        self._open = block
        if block.parts:
            self._delta(block, "".join(block.parts))
            if block.kind != "tool_use":
                block.parts = []

    def _delta(self, block: _Block, text: str) -> None:
        self._chars += len(text)
        if block.kind == "text":
            delta: JSON = {"type": "text_delta", "text": text}
        elif block.kind == "thinking":
            delta = {"type": "thinking_delta", "thinking": text}
        else:
            delta = {"type": "input_json_delta", "partial_json": text}
        self._emit(
            "content_block_delta",
            {"type": "content_block_delta", "index": block.index, "delta": delta},
        )

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
        stop_reason, stop_sequence = _stop(self._finish_reason, self._matched_stop, self._has_tools)
        usage = self._usage or {"output_tokens": math.ceil(self._chars / 4)}
        self._emit(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": usage,
            },
        )
        self._emit("message_stop", {"type": "message_stop"})
        self._done = True

    def _plain_json(self, body: bytes) -> None:
        """The upstream ignored `stream` and answered with JSON: replay it as events."""
        if not body.strip():
            self._fail("api_error", "upstream ended the stream without an answer")
            return
        status, translated = translate_response(200, body, model=self._model)
        message = orjson.loads(translated)
        if status != 200:
            self._fail(message["error"]["type"], message["error"]["message"])
            return
        self._started = True
        self._out.append(message_events(message))
        self._done = True


def message_events(message: JSON) -> bytes:
    """A complete Anthropic message as the SSE events that would have streamed it."""
    head = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    out = [encode_event("message_start", {"type": "message_start", "message": head})]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            start: JSON = {**block, "text": ""}
            delta: JSON = {"type": "text_delta", "text": block["text"]}
        elif block["type"] == "thinking":
            start = {**block, "thinking": ""}
            delta = {"type": "thinking_delta", "thinking": block["thinking"]}
        else:
            start = {**block, "input": {}}
            delta = {
                "type": "input_json_delta",
                "partial_json": orjson.dumps(block["input"]).decode(),
            }
        for name, payload in (
            ("content_block_start", {"index": index, "content_block": start}),
            ("content_block_delta", {"index": index, "delta": delta}),
            ("content_block_stop", {"index": index}),
        ):
            out.append(encode_event(name, {"type": name, **payload}))
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    out.append(
        encode_event(
            "message_delta", {"type": "message_delta", "delta": stop, "usage": message["usage"]}
        )
    )
    out.append(encode_event("message_stop", {"type": "message_stop"}))
    return b"".join(out)
