"""What a request is, read from its shape: the signals Claude Code's requests carry.

Every signal a future Claude Code version may change is read here and nowhere else, and
tested against requests captured from the pinned version (tests/fixtures/claude-code/,
docs/router.md#request-kinds says which signal each kind has). A shape no signal
recognises is a main turn, never an error.

`body` is the routing view of a request (extproc.proxy.exchange's parse): `tools` entries,
`system` and `thinking` may be raw JSON (msgspec.Raw), decoded here only when asked for.
"""

from __future__ import annotations

from typing import Any

import msgspec

from extproc.config.rules import Kind
from extproc.translate.token_estimate import CHARS_PER_TOKEN

COMPACT_MARKER = "create a detailed summary of the conversation so far"
"""In the instructions Claude Code appends to the last user message to compact (/compact and
auto-compaction); the main system prompt and tools stay, for the prompt cache."""
SUBAGENT_MARKER = "cc_is_subagent=true"
"""In the billing line (the first system block) of every request a subagent sends."""


class _ToolHead(msgspec.Struct):
    """What a rule reads of a tool: its name, and its type for server tools."""

    name: str = ""
    type: str = ""


_TOOL_HEAD = msgspec.json.Decoder(_ToolHead)


def tool_heads(body: dict[str, Any]) -> list[_ToolHead]:
    """Each tool's name and type, reading only those two fields of a raw tool."""
    heads = []
    for tool in body.get("tools") or ():
        if isinstance(tool, dict):
            name, kind = tool.get("name"), tool.get("type")
            heads.append(_ToolHead(name if isinstance(name, str) else "", kind or ""))
            continue
        try:
            heads.append(_TOOL_HEAD.decode(tool))
        except (msgspec.ValidationError, msgspec.DecodeError):
            heads.append(_ToolHead())
    return heads


def tool_names(body: dict[str, Any]) -> list[str]:
    return [head.name for head in tool_heads(body) if head.name]


def _blocks(message: Any) -> list[dict[str, Any]]:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _last_user(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The blocks of the last `user` message (`role: system` entries after it skipped)."""
    messages = body.get("messages")
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _blocks(message)
    return []


def _decoded(value: Any) -> Any:
    """A raw field's value; None for text the sidecar can't read (the provider judges it)."""
    if not isinstance(value, msgspec.Raw):
        return value
    try:
        return msgspec.json.decode(value)
    except msgspec.DecodeError:
        return None


def _system_text(body: dict[str, Any]) -> str:
    """The first system block's text: Claude Code's billing line."""
    system = _decoded(body.get("system"))
    if isinstance(system, str):
        return system
    if isinstance(system, list) and system and isinstance(system[0], dict):
        text = system[0].get("text")
        return text if isinstance(text, str) else ""
    return ""


def request_kind(body: dict[str, Any]) -> Kind:
    """Which of Claude Code's requests this is (see KINDS); `main` when nothing says else."""
    output = body.get("output_config")
    if not body.get("tools") and isinstance(output, dict) and "format" in output:
        return "title"
    heads = tool_heads(body)
    if heads and all(head.type.startswith("web_search_") for head in heads):
        return "web_search"
    last = _last_user(body)
    if any(COMPACT_MARKER in str(b.get("text", "")) for b in last if b.get("type") == "text"):
        return "compact"
    if SUBAGENT_MARKER in _system_text(body):
        return "subagent"
    if any(b.get("type") == "tool_result" for b in last):
        return "tool_result"
    return "main"


def has_images(body: dict[str, Any]) -> bool:
    """An image anywhere in the conversation, tool results included: every later request of
    the session carries it, and a model that can't see refuses them all."""
    messages = body.get("messages")
    return any(_holds_image(b) for m in messages or () for b in _blocks(m))


def _holds_image(block: dict[str, Any]) -> bool:
    if block.get("type") == "image":
        return True
    inner = block.get("content") if block.get("type") == "tool_result" else None
    return isinstance(inner, list) and any(
        isinstance(b, dict) and b.get("type") == "image" for b in inner
    )


def asks_thinking(body: dict[str, Any]) -> bool:
    """`thinking` enabled (a budget) or adaptive: Claude Code's main turns on models that
    think; its subagents, titles and web searches send `disabled` or none."""
    thinking = _decoded(body.get("thinking"))
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def estimated_input_tokens(body: dict[str, Any]) -> int:
    """As the local count_tokens answer counts (translate/token_estimate.py): one token per
    four characters of system, messages and tools; msgspec writes raw tools as they came."""
    parts = (body.get("system"), body.get("messages"), body.get("tools"))
    size = sum(len(msgspec.json.encode(part)) for part in parts if part)
    return max(1, size // CHARS_PER_TOKEN)
