"""The Anthropic side of every translator: reading a Messages request, writing an answer.

`openai_chat` (Chat Completions) and `openai_responses` (Responses) differ in the
wire they write and read; what they read from Claude Code's request (system texts, content
blocks, thinking effort, session id) and how they write Anthropic ids, usage counts and
replayed events is the same, and lives here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any

import orjson

from extproc.config.contract import Contract
from extproc.translate.sse import encode_event

JSON = dict[str, Any]


class TranslationError(Exception):
    """The request can't be expressed in the provider's API; answer the client with a 400."""

    def __init__(self, message: str, error_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


_BILLING_HEADER = "x-anthropic-billing-header:"
_USER_MAX = 64
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high", "xhigh": "high"}
# Blocks with no meaning at another provider: reasoning (a translator that carries its own
# reads thinking blocks before this) and server-side tool traffic (ran at Anthropic; its
# results end in *_tool_result).
_DROPPED_BLOCKS = {
    "thinking",
    "redacted_thinking",
    "server_tool_use",
    "mcp_tool_use",
    "container_upload",
}


def request_messages(body: JSON) -> Iterator[tuple[int, Any, Any]]:
    """(index, role, content) of each message of a Messages request, checked as it is read.

    Only the list itself is checked here; each message is checked when its turn comes, so
    errors are reported in the order of the messages.
    """
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise TranslationError("messages: field required (a list)")
    return _each_message(messages)


def _each_message(messages: list[Any]) -> Iterator[tuple[int, Any, Any]]:
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise TranslationError(f"messages.{i}: must be an object")
        yield i, message.get("role"), message.get("content")


def system_texts(system: Any) -> list[str]:
    """Top-level system prompt as texts, without Claude Code's per-request billing line.

    The billing block changes on every request; leaving it first would defeat the prefix
    caches of OpenAI-style providers for the whole (80 KB) prompt.
    """
    if system is None:
        return []
    return [t for t in plain_texts(system, "system") if not t.startswith(_BILLING_HEADER)]


def plain_texts(content: Any, where: str) -> list[str]:
    """A string, or the texts of a list of text blocks (other block kinds are ignored)."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        texts = [b.get("text") for b in content if b.get("type") == "text"]
        if all(isinstance(t, str) for t in texts):
            return texts
    raise TranslationError(f"{where}: must be a string or a list of text blocks")


def content_blocks(content: Any, i: int) -> list[JSON]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        return content
    raise TranslationError(f"messages.{i}.content: must be a string or a list of blocks")


def block_text(block: JSON, where: str) -> str | None:
    """Text of a block that reads as text; None for blocks dropped from history."""
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str):
            raise TranslationError(f"{where}.text: must be a string")
        return text
    if kind == "document":
        return _document_text(block)
    if kind == "image":  # for a model that reads no images
        return "[image]"
    if kind == "compaction":  # a summary of earlier context; None marks a failed compaction
        content = block.get("content")
        return content if isinstance(content, str) else None
    if kind == "search_result":
        texts = [c.get("text", "") for c in as_list(block.get("content")) if isinstance(c, dict)]
        return "\n\n".join([str(block.get("title", "")), *texts]).strip()
    if isinstance(kind, str) and (kind in _DROPPED_BLOCKS or kind.endswith("_tool_result")):
        return None
    raise TranslationError(
        f"{where}: content block type {kind!r} can't be translated for this provider"
    )


def _document_text(block: JSON) -> str:
    """Plain-text documents read as their text; other kinds (PDF) can't be sent portably."""
    source = as_dict(block.get("source"))
    if source.get("type") == "text" and isinstance(source.get("data"), str):
        return source["data"]
    if source.get("type") == "content" and isinstance(source.get("content"), list):
        texts = (c.get("text") for c in source["content"] if isinstance(c, dict))
        return "\n\n".join(t for t in texts if isinstance(t, str) and t)
    return f"[document: {source.get('media_type') or source.get('type') or 'unknown'}]"


def is_custom_tool(tool: Any) -> bool:
    """Server tools (web search, bash, text editor, ...) run at Anthropic; others can't."""
    return isinstance(tool, dict) and tool.get("type") in (None, "custom")


def reasoning_effort(body: JSON, contract: Contract, tools: bool) -> str | None:
    """The effort level to ask for, if thinking is on: the client's, or the next level up the
    model takes; with tools, what the contract's `tools_effort` says."""
    wanted = _wanted_effort(body)
    if wanted is None:
        return None
    if tools and contract.tools_effort != "keep":
        return None if contract.tools_effort == "drop" else "none"
    levels = contract.reasoning_levels.split(",")
    return next(
        (level for level in _LEVELS[_LEVELS.index(wanted) :] if level in levels), levels[-1]
    )


_LEVELS = ("low", "medium", "high")


def _wanted_effort(body: JSON) -> str | None:
    thinking = body.get("thinking")
    if not isinstance(thinking, dict):
        return None
    if thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        budget = budget if isinstance(budget, int | float) else 0
        return "low" if budget < 4096 else "medium" if budget < 16384 else "high"
    if thinking.get("type") == "adaptive":
        effort = output_config(body).get("effort")
        return _EFFORTS.get(effort, "medium") if isinstance(effort, str) else "medium"
    return None


def output_config(body: JSON) -> JSON:
    return as_dict(body.get("output_config"))


def as_dict(value: Any) -> JSON:
    """An optional object field; a client's wrongly typed one reads as absent."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def hashed_user(metadata: Any) -> str | None:
    """metadata.user_id → `user` (≤ 64 chars; Claude Code's is a long JSON string: hash it)."""
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user_id, str) or not user_id:
        return None
    if len(user_id) <= _USER_MAX:
        return user_id
    return hashlib.sha256(user_id.encode()).hexdigest()


def session_id(metadata: Any) -> str | None:
    """Claude Code's session id, from the JSON object it sends as `metadata.user_id`."""
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user_id, str) or not user_id.startswith("{"):
        return None
    try:
        session = orjson.loads(user_id).get("session_id")
    except orjson.JSONDecodeError:  # text that starts with "{" and parses is an object
        return None
    return session if isinstance(session, str) and 0 < len(session) <= _USER_MAX else None


BAD_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def token_count(value: Any) -> int:
    return round(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def usage_counts(input_total: Any, output: Any, cached: Any, created: Any) -> JSON:
    """Anthropic usage from an OpenAI-style count, whose input includes the cache: Anthropic
    counts cache reads and cache writes apart from input. Fractional counts are rounded."""
    cached, created = token_count(cached), token_count(created)
    return {
        "input_tokens": max(token_count(input_total) - cached - created, 0),
        "output_tokens": token_count(output),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": created,
    }


def anthropic_tool_id(raw: Any, message_id: str, n: int) -> str:
    """Keep upstream ids, but only in the charset Anthropic accepts for tool_use ids, so the
    history stays valid if a later turn is routed to Anthropic."""
    if isinstance(raw, str) and raw:
        return BAD_ID_CHARS.sub("_", raw)
    return fallback_tool_id(message_id, n)


def fallback_tool_id(message_id: str, n: int) -> str:
    """An id for a call that came without one, unique across the conversation."""
    return BAD_ID_CHARS.sub("_", f"toolu_{message_id.removeprefix('msg_')}_{n}")


def anthropic_message_id(raw: Any, fallback: bytes) -> str:
    if isinstance(raw, str) and raw:
        return "msg_" + BAD_ID_CHARS.sub("_", raw)
    return "msg_" + hashlib.blake2b(fallback, digest_size=12).hexdigest()


def tool_input(arguments: Any) -> JSON:
    """Arguments are a JSON string; anything unparseable becomes {} (documented)."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = orjson.loads(arguments or "{}")
    except (orjson.JSONDecodeError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def tool_name(name: Any, tool_names: dict[str, str]) -> str:
    """The client's name for the tool a provider called `name` (a shortened name maps back
    through `tool_names`); "" when it gave none. Any other type is a malformed answer: a
    number would reach the client as the name (TypeError, one of MALFORMED)."""
    if name is None:
        return ""
    if not isinstance(name, str):
        raise TypeError(f"a tool call's name must be a string, not {type(name).__name__}")
    return tool_names.get(name, name)


def anthropic_message(
    message_id: str,
    model: str,
    content: list[JSON],
    usage: JSON,
    stop_reason: str | None = None,
    stop_sequence: str | None = None,
) -> JSON:
    """An assistant message as Anthropic writes it: whole, or (no stop reason yet, no content)
    as a stream's `message_start` carries it."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage,
    }


MALFORMED = (TypeError, AttributeError, ValueError, KeyError)
"""What reading a provider's answer raises when one of its fields has an unexpected type."""


def message_events(message: JSON) -> bytes:
    """A complete Anthropic message as the SSE events that would have streamed it."""
    head = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    out = [encode_event("message_start", {"type": "message_start", "message": head})]
    for index, block in enumerate(message["content"]):
        for name, payload in block_events(index, block):
            out.append(encode_event(name, {"type": name, "index": index, **payload}))
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    out.append(
        encode_event(
            "message_delta", {"type": "message_delta", "delta": stop, "usage": message["usage"]}
        )
    )
    out.append(encode_event("message_stop", {"type": "message_stop"}))
    return b"".join(out)


def block_events(index: int, block: JSON) -> list[tuple[str, JSON]]:
    """(event name, payload without type and index) that stream one whole content block."""
    if block["type"] == "text":
        start: JSON = {**block, "text": ""}
        deltas: list[JSON] = [{"type": "text_delta", "text": block["text"]}]
    elif block["type"] == "thinking":
        start = {**block, "thinking": "", "signature": ""}
        deltas = (
            [{"type": "thinking_delta", "thinking": block["thinking"]}] if block["thinking"] else []
        )
        if block["signature"]:
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
    else:
        start = {**block, "input": {}}
        deltas = [
            {"type": "input_json_delta", "partial_json": orjson.dumps(block["input"]).decode()}
        ]
    return [
        ("content_block_start", {"content_block": start}),
        *(("content_block_delta", {"delta": delta}) for delta in deltas),
        ("content_block_stop", {}),
    ]
