"""A route's or rule's `reasoning_effort`, written into the request in Anthropic's terms.

The request is changed only where the client already asks for thinking, and only in the
field it used, so no parameter reaches a model that the client did not send for it:

- `thinking: {type: adaptive}` (Claude Code on models that take it): `output_config.effort`;
- `thinking: {type: enabled, budget_tokens}`: the budget (below `max_tokens`).

An OpenAI-style provider then gets the effort in its own field from the translation, by its
model family's contract: `reasoning_effort` on Chat Completions, `reasoning.effort` on the
Responses API, nothing for a model without reasoning (extproc.translate.anthropic_format
reads the same two fields back as low/medium/high).
"""

from __future__ import annotations

from typing import Any

BUDGETS = {"low": 2048, "medium": 8192, "high": 16384}
"""Thinking budgets that the translation reads back as the same level (<4096 low, <16384
medium, else high)."""
MIN_BUDGET = 1024
"""Anthropic's smallest `budget_tokens`."""


def with_effort(body: dict[str, Any], effort: str) -> dict[str, Any] | None:
    """The body asking for `effort`, or None when it asks for no thinking (left as it is)."""
    thinking = body.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "adaptive":
        output = body.get("output_config")
        output = output if isinstance(output, dict) else {}
        return {**body, "output_config": {**output, "effort": effort}}
    if kind == "enabled":
        ceiling = body.get("max_tokens")
        budget = BUDGETS[effort]
        if isinstance(ceiling, int) and not isinstance(ceiling, bool):
            budget = min(budget, ceiling - 1)
        if budget < MIN_BUDGET:
            return None
        return {**body, "thinking": {**thinking, "budget_tokens": budget}}
    return None
