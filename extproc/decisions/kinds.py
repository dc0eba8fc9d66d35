"""What a request is, read from its shape: the signals Claude Code's requests carry.

Every signal a future Claude Code version may change is read here and nowhere else, and
tested against requests captured from the pinned version (tests/fixtures/claude-code/,
docs/router.md#request-kinds says which signal each kind has). A shape no signal
recognises is a main turn, never an error.

`body` is the routing view of a request (extproc.proxy.exchange's parse): each tool is only
its `type` and `name`; `system` and `thinking` may be raw JSON (msgspec.Raw), decoded here
only when asked for.
"""

from __future__ import annotations

from typing import Any

import msgspec

from extproc.config.rules import Kind

COMPACT_MARKER = "create a detailed summary of the conversation so far"
"""In the instructions Claude Code appends to the last user message to compact (/compact and
auto-compaction); the main system prompt and tools stay, for the prompt cache."""
SUBAGENT_MARKER = "cc_is_subagent=true"
"""In the billing line (the first system block) of every request a subagent sends."""


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools")
    return [t for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []


def tool_names(body: dict[str, Any]) -> list[str]:
    return [t["name"] for t in _tools(body) if isinstance(t.get("name"), str) and t["name"]]


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


def is_title(body: dict[str, Any]) -> bool:
    """The session-title call: no tools, and JSON output asked for."""
    output = body.get("output_config")
    return not body.get("tools") and isinstance(output, dict) and "format" in output


def request_kind(body: dict[str, Any]) -> Kind:
    """Which of Claude Code's requests this is (see KINDS); `main` when nothing says else."""
    if is_title(body):
        return "title"
    tools = _tools(body)
    if tools and all(str(t.get("type") or "").startswith("web_search_") for t in tools):
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
