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

from extproc.translate import errors, signatures
from extproc.translate.anthropic_format import (
    BAD_ID_CHARS,
    JSON,
    MALFORMED,
    TranslationError,
    anthropic_message_id,
    anthropic_tool_id,
    as_dict,
    as_list,
    block_events,
    block_text,
    content_blocks,
    fallback_tool_id,
    hashed_user,
    is_custom_tool,
    output_config,
    plain_texts,
    reasoning_effort,
    session_id,
    system_texts,
    token_count,
    tool_input,
)
from extproc.translate.contract import COMMON, Contract
from extproc.translate.stream import AnthropicStream

# ---------------------------------------------------------------------------------------------
# Request: Anthropic Messages → Chat Completions
# ---------------------------------------------------------------------------------------------

_STOP_MAX = 4


def translate_request(
    body: JSON,
    *,
    model: str,
    contract: Contract = COMMON,
    max_tokens_cap: int | None = None,
) -> bytes:
    """Anthropic Messages body (parsed) → Chat Completions JSON bytes for `model`.

    Only fields with a Chat Completions meaning are carried; everything else is dropped, so
    strict providers never see Anthropic-only fields. `contract` says what this model's API
    requires beyond the common format (see extproc/translate/contract.py).
    """
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list):
        raise TranslationError("messages: field required (a list)")
    system = system_texts(body.get("system"))
    messages: list[JSON] = []
    turn: list[tuple[str, JSON]] = []  # the assistant turn being read, as (where, block)
    for i, message in enumerate(raw_messages):
        if not isinstance(message, dict):
            raise TranslationError(f"messages.{i}: must be an object")
        role = message.get("role")
        content = message.get("content")
        if role == "assistant":
            # Consecutive assistant messages are one turn, as Anthropic reads them; Claude
            # Code sends a streamed answer back as one message per content block.
            turn += [
                (f"messages.{i}.content.{j}", b) for j, b in enumerate(content_blocks(content, i))
            ]
            continue
        messages.extend(_assistant_messages(turn, contract))
        turn = []
        if role == "system":
            system.append("\n\n".join(plain_texts(content, f"messages.{i}.content")))
        elif role == "user":
            messages.extend(_user_messages(content_blocks(content, i), i, contract))
        else:
            raise TranslationError(f"messages.{i}.role: unexpected value {role!r}")
    messages.extend(_assistant_messages(turn, contract))
    system = [s for s in system if s]
    if system:
        messages.insert(0, {"role": "system", "content": "\n\n".join(system)})
    if contract.short_tool_ids:
        _shorten_tool_ids(messages)

    out: JSON = {"model": model, "messages": messages}
    tools = [chat_tool(t, contract) for t in as_list(body.get("tools")) if is_custom_tool(t)]
    if tools:
        out["tools"] = tools
        offered = {t["function"]["name"] for t in tools}
        out.update(chat_tool_choice(body.get("tool_choice"), offered, contract))
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int):
        limit = min(max_tokens, max_tokens_cap) if max_tokens_cap else max_tokens
        out[contract.token_field] = limit
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    stop = body.get("stop_sequences")
    if isinstance(stop, list) and stop and contract.stop:
        out["stop"] = list(stop)[:_STOP_MAX]
    if body.get("stream"):
        out["stream"] = True
        if contract.stream_options:
            out["stream_options"] = {"include_usage": True}
    effort = reasoning_effort(body, contract, bool(tools)) if contract.reasoning else None
    if effort:
        out["reasoning_effort"] = effort
    response_format = chat_response_format(body)
    if response_format:
        out["response_format"] = response_format
    user = hashed_user(body.get("metadata")) if contract.user_field else None
    if user:
        out["user"] = user
    session = session_id(body.get("metadata")) if contract.prompt_cache_key else None
    if session:
        out["prompt_cache_key"] = session
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


def _user_messages(blocks: list[JSON], i: int, contract: Contract) -> list[JSON]:
    """Tool results first (as `tool` messages, answering the previous assistant turn), then
    the rest of the turn as one user message. Images and PDFs a tool returned can't travel
    in a `tool` message (text only): they open that user message, each set introduced by
    the id of the tool result it belongs to."""
    tools: list[JSON] = []
    parts: list[JSON] = []
    for j, block in enumerate(blocks):
        where = f"messages.{i}.content.{j}"
        kind = block.get("type")
        if kind == "tool_result":
            message, media = chat_tool_message(block, where, contract)
            tools.append(message)
            if media:
                tool_id = message["tool_call_id"]
                shown = short_tool_id(tool_id) if contract.short_tool_ids else tool_id
                label = f"[attachments of tool result {shown}]"
                parts += [{"type": "text", "text": label}, *media]
        elif (media := chat_media_part(block, where, contract)) is not None:
            parts.append(media)
        else:
            text = block_text(block, where)
            if text is not None:
                parts.append({"type": "text", "text": text})
    if not parts:
        return tools
    if all(p["type"] == "text" for p in parts):
        return [*tools, {"role": "user", "content": "\n\n".join(p["text"] for p in parts)}]
    return [*tools, {"role": "user", "content": parts}]


GEMINI_SIGNATURE_PLACEHOLDER = "skip_thought_signature_validator"
"""Google's documented stand-in for a function call in a history Gemini did not write."""


def _assistant_messages(blocks: list[tuple[str, JSON]], contract: Contract) -> list[JSON]:
    """Text and tool calls of one assistant turn; a turn left empty (thinking only) is dropped.

    Thinking blocks carry what the provider wants back: their text as `reasoning_content`
    (DeepSeek, Kimi), our signatures' thought signatures on the calls they belong to (Gemini).
    """
    texts: list[str] = []
    thinking: list[str] = []
    thought_signatures: dict[str, str] = {}
    calls: list[JSON] = []
    for where, block in blocks:
        kind = block.get("type")
        if kind == "tool_use":
            calls.append(chat_tool_call(block, where, contract))
        elif kind == "thinking":
            if isinstance(block.get("thinking"), str) and block["thinking"]:
                thinking.append(block["thinking"])
            saved = signatures.state(block.get("signature"))
            tool_id, signature = saved.get("tool_use_id"), saved.get("thought_signature")
            if isinstance(tool_id, str) and isinstance(signature, str):
                thought_signatures[tool_id] = signature
        else:
            text = block_text(block, where)
            if text is not None:
                texts.append(text)
    if not calls:
        return [{"role": "assistant", "content": "\n\n".join(texts)}] if texts else []
    message: JSON = {"role": "assistant", "content": "\n\n".join(texts) if texts else None}
    if contract.reasoning_echo:
        message["reasoning_content"] = "\n\n".join(thinking)
    if contract.thought_signatures:
        for n, call in enumerate(calls):
            signature = thought_signatures.get(call["id"])
            if signature is None and n == 0:
                signature = GEMINI_SIGNATURE_PLACEHOLDER
            if signature is not None:
                call["extra_content"] = {"google": {"thought_signature": signature}}
    message["tool_calls"] = calls
    return [message]


def chat_media_part(block: JSON, where: str, contract: Contract) -> JSON | None:
    """An image, or a PDF where the API takes files, as a content part; None for the rest."""
    source = as_dict(block.get("source"))
    if block.get("type") == "image" and contract.images:
        if source.get("type") == "base64":
            url = f"data:{source.get('media_type')};base64,{source.get('data')}"
        elif source.get("type") == "url":
            url = source.get("url")
        else:
            message = f"{where}.source: image source {source.get('type')!r} unsupported"
            raise TranslationError(message)
        return {"type": "image_url", "image_url": {"url": url}}
    if (
        block.get("type") == "document"
        and contract.file_parts
        and source.get("type") == "base64"
        and source.get("media_type") == "application/pdf"
    ):
        title = block.get("title")
        filename = title if isinstance(title, str) and title else "document.pdf"
        data = f"data:application/pdf;base64,{source.get('data')}"
        return {"type": "file", "file": {"filename": filename, "file_data": data}}
    return None


def chat_tool_message(block: JSON, where: str, contract: Contract) -> tuple[JSON, list[JSON]]:
    """A tool_result as a `tool` message (text only), and the images and files it held, which
    the caller sends in the user message that follows; the text marks where they stood."""
    content = block.get("content")
    media: list[JSON] = []
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts = []
        for k, item in enumerate(content):
            if not isinstance(item, dict):
                raise TranslationError(f"{where}.content.{k}: must be an object")
            part = chat_media_part(item, f"{where}.content.{k}", contract)
            if part is not None:
                media.append(part)
                texts.append("[image]" if part["type"] == "image_url" else "[document]")
            elif item.get("type") == "tool_reference":
                texts.append(f"[tool: {item.get('tool_name', '')}]")
            else:
                piece = block_text(item, f"{where}.content.{k}")
                if piece is not None:
                    texts.append(piece)
        text = "\n\n".join(texts)
    else:
        raise TranslationError(f"{where}.content: must be a string or a list of blocks")
    if block.get("is_error"):
        text = f"Error: {text}"
    tool_call_id = str(block.get("tool_use_id", ""))
    return {"role": "tool", "tool_call_id": tool_call_id, "content": text}, media


def chat_tool_call(block: JSON, where: str, contract: Contract) -> JSON:
    name = block.get("name")
    if not isinstance(name, str) or not name:
        raise TranslationError(f"{where}.name: a tool_use block needs a name")
    try:
        arguments = orjson.dumps(block.get("input", {})).decode()
    except orjson.JSONEncodeError as exc:
        raise TranslationError(f"{where}.input: {exc}") from exc
    return {
        "id": str(block.get("id", "")),
        "type": "function",
        "function": {
            "name": provider_tool_name(name, contract.tool_name_max),
            "arguments": arguments,
        },
    }


def chat_tool(tool: JSON, contract: Contract) -> JSON:
    if not isinstance(tool.get("name"), str) or not tool["name"]:
        raise TranslationError("tools: every tool needs a name")
    function: JSON = {"name": provider_tool_name(tool["name"], contract.tool_name_max)}
    if tool.get("description"):
        function["description"] = tool["description"]
    function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def provider_tool_name(name: str, limit: int) -> str:
    """The name a provider accepts for tool `name`: itself when it fits the OpenAI pattern and
    `limit`, else a cleaned prefix and a hash of the whole (stable, so a call in the history
    and the tool it calls keep one name). `tool_names` maps them back in the answer."""
    if len(name) <= limit and _TOOL_NAME.match(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{BAD_ID_CHARS.sub('_', name)[: limit - 9]}_{digest}"


def tool_names(body: JSON, contract: Contract) -> dict[str, str]:
    """Provider name → original for every tool name of the request that had to change."""
    names = [t.get("name") for t in as_list(body.get("tools")) if isinstance(t, dict)]
    for message in as_list(body.get("messages")):
        for block in as_list(message.get("content") if isinstance(message, dict) else None):
            if isinstance(block, dict) and block.get("type") == "tool_use":
                names.append(block.get("name"))
    out = {}
    for name in names:
        if isinstance(name, str) and name:
            short = provider_tool_name(name, contract.tool_name_max)
            if short != name:
                out[short] = name
    return out


def chat_tool_choice(choice: Any, offered: set[str], contract: Contract) -> JSON:
    """`offered`: the tools' names as sent; a choice of a tool that was dropped is dropped."""
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
    elif kind == "tool" and isinstance(choice.get("name"), str) and choice["name"]:
        name = provider_tool_name(choice["name"], contract.tool_name_max)
        if name in offered:
            out["tool_choice"] = {"type": "function", "function": {"name": name}}
    if choice.get("disable_parallel_tool_use") and kind != "none":
        out["parallel_tool_calls"] = False
    return out


def chat_response_format(body: JSON) -> JSON | None:
    """Structured output (`output_config.format`, or the older beta `output_format`)."""
    fmt = output_config(body).get("format") or body.get("output_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = fmt.get("schema") or {}
        return {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": False},
        }
    return None


# ---------------------------------------------------------------------------------------------
# Response: Chat Completions → Anthropic Messages (shared by JSON and SSE)
# ---------------------------------------------------------------------------------------------

_FINISH = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


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
    """OpenAI usage → Anthropic usage. Anthropic counts cache reads and cache writes apart
    from input; some servers report fractional counts, which are rounded."""
    if not isinstance(usage, dict):
        return None
    details = as_dict(usage.get("prompt_tokens_details"))
    prompt = token_count(usage.get("prompt_tokens"))
    cached = token_count(details.get("cached_tokens"))
    created = token_count(details.get("cache_creation_tokens"))
    return {
        "input_tokens": max(prompt - cached - created, 0),
        "output_tokens": token_count(usage.get("completion_tokens")),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": created,
    }


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


def _thought_signature(call: JSON) -> str | None:
    """Gemini's `extra_content.google.thought_signature` on a tool call, if any."""
    google = as_dict(as_dict(call.get("extra_content")).get("google"))
    signature = google.get("thought_signature")
    return signature if isinstance(signature, str) and signature else None


def _signature_block(tool_id: str, thought_signature: str) -> JSON:
    """A thinking block that carries a tool call's thought signature through Claude Code."""
    state = {"tool_use_id": tool_id, "thought_signature": thought_signature}
    return {"type": "thinking", "thinking": "", "signature": signatures.sign(state)}


def translate_response(
    status: int, body: bytes, *, model: str, tool_names: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """A non-streamed upstream answer → (status for the client, Anthropic JSON bytes).

    `tool_names` maps the tool names sent to the provider back to the client's (`tool_names`).
    """
    try:
        data = errors.answer_json(status, body)
    except errors.UnusableAnswer as exc:
        return exc.reply
    err = errors.error_object(data)
    if err is not None:
        client_status = errors.status_of(err, 502)
        return client_status, errors.error_body(errors.type_of(err, 502), errors.message_of(err))
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return 502, errors.error_body("api_error", "upstream answer has no choices")
    try:
        return status, orjson.dumps(_message(data, choices[0], model, body, tool_names or {}))
    except MALFORMED as exc:
        return 502, errors.error_body("api_error", f"malformed answer from upstream: {exc}")


def _message(data: JSON, choice: JSON, model: str, body: bytes, tool_names: dict[str, str]) -> JSON:
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
    message_id = anthropic_message_id(data.get("id"), body)
    calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
    for n, call in enumerate(calls):
        function = call.get("function") or {}
        tool_id = anthropic_tool_id(call.get("id"), message_id, n)
        signature = _thought_signature(call)
        if signature:
            content.append(_signature_block(tool_id, signature))
        name = function.get("name") or ""
        content.append(
            {
                "type": "tool_use",
                "id": tool_id,
                "name": tool_names.get(name, name),
                "input": tool_input(function.get("arguments")),
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
            self._message_id = anthropic_message_id(chunk.get("id"), orjson.dumps(chunk))
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
        signature = _thought_signature(call)
        if signature:
            block.signature = signature
            if block.index >= 0:  # came after its block started: sent at the end
                self._late_signatures.append(block)
        if block.closed:
            return  # a fragment after a complete object: invalid anyway; drop it
        if not block.tool_id and tool_id:
            block.tool_id = tool_id
        if not block.name and isinstance(name, str):
            block.name = self._tool_names.get(name, name)
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
        if block.kind == "text":
            start: JSON = {"type": "text", "text": ""}
        elif block.kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
        else:
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

    def _signature(self, call: _Block) -> None:
        """A whole thinking block carrying `call`'s thought signature, as its own index."""
        signed = _signature_block(call.tool_id, call.signature)
        call.signature = ""
        index = self._next_index
        self._next_index += 1
        for name, payload in block_events(index, signed):
            self._emit(name, {"type": name, "index": index, **payload})

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
        for call in self._late_signatures:
            if call.signature:
                self._signature(call)
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
