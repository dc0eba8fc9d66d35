"""The conversation window the router classifies, cut from an Anthropic Messages body.

The window *ends* at the latest user message that has real text (``<system-reminder>`` blocks
removed). Every tool-loop request of one user turn therefore yields the same window, so the
sticky cache keyed on it holds for the whole turn and the model is never switched mid-task.

The budget counts what the model reads: each message as the prompt carries it, ``json.dumps``
of ``{"role": ..., "content": ...}``, ASCII-escaped as the model card does. ``日本語`` is read as
``\\u65e5\\u672c\\u8a9e`` (15 tokens with Qwen's tokenizer, not 2).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

Message = dict[str, str]
TokenCounter = Callable[[str], int]

_OPEN, _CLOSE = "<system-reminder>", "</system-reminder>"
_REMINDER = re.compile(f"{_OPEN}.*?{_CLOSE}", re.DOTALL)
_ELLIPSIS = "\n…\n"
TEXT_LIMIT = 1 << 16
"""Characters of one text block that the window reads: the first and last half of this.
The router sees at most `window_tokens` of a text, from its two ends, so a pasted
multi-megabyte log is cut before its reminders are stripped (1.7 ms at 4 MB otherwise)."""


WINDOW_TOKENS_AUTO = {"cpu": 256, "cuda": 512}
"""``routing.window_tokens: auto`` per device. On 2 CPU cores a fresh decision costs about
2.4 s at 256 tokens and 4.4 s at 512; on an H200, 17 ms and 20 ms (docs/benchmarks.md)."""


def window_budget(setting: int | str, device: str) -> int:
    """The window's token budget: the configured number, or ``auto``'s for the device."""
    if setting == "auto":
        return WINDOW_TOKENS_AUTO.get(device, WINDOW_TOKENS_AUTO["cpu"])
    return int(setting)


def estimate_tokens(text: str) -> int:
    """archgw's estimate: four characters a token. Used when no tokenizer is given."""
    return math.ceil(len(text) / 4)


def strip_reminders(text: str) -> str:
    """Remove Claude Code's ``<system-reminder>`` blocks: injected context, not user intent.

    A text over `TEXT_LIMIT` is cut to its two ends first, and each end is cleaned on its
    own: a reminder the cut opened or closed is dropped up to the cut, never left half.
    """
    if len(text) <= TEXT_LIMIT:
        return _REMINDER.sub("", text).strip()
    half = TEXT_LIMIT // 2
    head = _REMINDER.sub("", text[: _outside_tag(text, half, before=True)])
    opened = head.find(_OPEN)
    if opened != -1:  # its closing tag was cut away
        head = head[:opened]
    tail = text[_outside_tag(text, len(text) - half, before=False) :]
    closed = tail.find(_CLOSE)
    if closed != -1 and _OPEN not in tail[:closed]:  # its opening tag was cut away
        tail = tail[closed + len(_CLOSE) :]
    return (head + _ELLIPSIS + _REMINDER.sub("", tail)).strip()


def _outside_tag(text: str, at: int, *, before: bool) -> int:
    """``at``, moved to the start (``before``) or end of a reminder tag that straddles it."""
    for tag in (_OPEN, _CLOSE):
        start = text.find(tag, max(0, at - len(tag) + 1), at + len(tag) - 1)
        if start != -1 and start < at:
            return start if before else start + len(tag)
    return at


def message_text(content: Any) -> str:
    """User-visible text of one message: string content or its text blocks, flattened.

    tool_use, tool_result, thinking, redacted_thinking, image and document blocks carry no
    intent the router can use (and can be huge), so only ``text`` blocks count.
    """
    if isinstance(content, str):
        return strip_reminders(content)
    if not isinstance(content, list):
        return ""
    parts = (
        strip_reminders(block["text"])
        for block in content
        if isinstance(block, dict)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    )
    return "\n".join(part for part in parts if part)


def truncate_middle(text: str, budget_tokens: int, count_tokens: TokenCounter) -> str:
    """Keep the head and tail of ``text`` so that it fits ``budget_tokens``.

    Both ends of a long prompt tend to say what the user wants (a pasted log, then the ask).
    """
    total = count_tokens(text)
    if total <= budget_tokens:
        return text
    keep = int(len(text) * budget_tokens / total)
    while keep > 0:
        head = keep - keep // 2
        cut = text[:head] + _ELLIPSIS + text[len(text) - keep // 2 :]
        if count_tokens(cut) <= budget_tokens:
            return cut
        keep = int(keep * 0.9)
    return ""


def message_json(role: str, text: str) -> str:
    """One message as the prompt carries it: JSON, ASCII-escaped, as the model was trained."""
    return json.dumps({"role": role, "content": text})


def prompt_tokens(role: str, text: str, count_tokens: TokenCounter) -> int:
    """Tokens of one message as the prompt carries it.

    A counter with a ``message(role, text)`` method
    (`extproc.decisions.routing.TokenCounts`) answers from its memory of recent messages
    without escaping them again (0.5 ms for 64 KB).
    """
    remembered = getattr(count_tokens, "message", None)
    if remembered is not None:
        return int(remembered(role, text))
    return count_tokens(message_json(role, text))


def conversation_window(
    body: dict[str, Any], budget_tokens: int, count_tokens: TokenCounter | None = None
) -> list[Message]:
    """Newest-first user/assistant text ending at the latest user text, within a budget.

    Returns ``[]`` when the body holds no user text at all (or the budget, under about ten
    tokens, cannot hold one message). ``role: system`` entries inside
    ``messages`` (Claude Code appends one after the user's text) are ignored, as are messages
    left empty once non-text blocks and reminders are gone. The latest user text is always
    kept, middle-truncated if it alone exceeds the budget; older messages are added while the
    whole window fits. Messages are measured by `prompt_tokens`.
    """
    count = count_tokens or estimate_tokens
    messages = body.get("messages")
    window: list[Message] = []
    used = 0
    # Newest first, so that a long history costs only the messages the window holds.
    for message in reversed(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            continue
        role = message["role"]
        if not window and role != "user":
            continue  # after the latest user text: not part of this window
        text = message_text(message.get("content"))
        if not text:
            continue
        if not window:
            text = truncate_middle(text, budget_tokens, lambda t: prompt_tokens("user", t, count))
            if not text:
                break  # the budget cannot hold even the message's JSON around it
            used = prompt_tokens(role, text, count)
        else:
            used += prompt_tokens(role, text, count)
            if used > budget_tokens:
                break
        window.append({"role": role, "content": text})
    window.reverse()
    return window
