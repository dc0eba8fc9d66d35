"""Anthropic Messages → Chat Completions: the request side of the Chat translator.

Only fields with a Chat Completions meaning are carried; every rule is listed, with its
reason, in docs/translation.md.
"""

from __future__ import annotations

import hashlib
import string

from extproc.config.contract import COMMON, Contract
from extproc.translate import signatures
from extproc.translate.anthropic_format import (
    JSON,
    TranslationError,
    as_list,
    block_text,
    content_blocks,
    is_custom_tool,
    plain_texts,
    reasoning_effort,
    request_messages,
    system_texts,
)
from extproc.translate.openai_format import (
    caller_fields,
    chat_media_part,
    chat_response_format,
    chat_tool,
    chat_tool_call,
    chat_tool_choice,
    chat_tool_message,
    encode_request,
    tool_names,
)

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
    requires beyond the common format (see extproc/config/contract.py).
    """
    raw_messages = request_messages(body)
    tool_names(body, contract)  # refuses two tools the provider would see as one
    system = system_texts(body.get("system"))
    messages: list[JSON] = []
    turn: list[tuple[str, JSON]] = []  # the assistant turn being read, as (where, block)
    for i, role, content in raw_messages:
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
    out.update(caller_fields(body, contract, user_field="user"))
    return encode_request(out)


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
