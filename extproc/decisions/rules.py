"""Which of the config's rules holds for a request, or why each doesn't.

A rule's conditions read what the gateway knows without a model (extproc.decisions.kinds):
the request's kind, images, thinking, tool names, an estimate of its input tokens and its
headers. Each fact is computed once per request, and only when a condition asks for it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from extproc.config.rules import Rule
from extproc.decisions import capability, kinds


class Facts:
    """What the rules may read of one request."""

    def __init__(self, body: dict[str, Any], headers: Mapping[str, str], size: int):
        self.body = body
        self.headers = headers
        self.size = size
        """The body's length in bytes, which the input-token estimate starts from."""

    @functools.cached_property
    def kind(self) -> str:
        return kinds.request_kind(self.body)

    @functools.cached_property
    def images(self) -> bool:
        return kinds.has_images(self.body)

    @functools.cached_property
    def thinking(self) -> bool:
        return kinds.asks_thinking(self.body)

    @functools.cached_property
    def tool_names(self) -> list[str]:
        return kinds.tool_names(self.body)

    @functools.cached_property
    def needs(self) -> capability.Needs:
        """What a model must take to serve the request: read once, for the rules and then
        for the capability check."""
        return capability.needs_of(self.body, self.size)

    @functools.cached_property
    def input_tokens(self) -> int:
        """The estimate the capability check makes (no tokenizer)."""
        return self.needs.input_tokens


def why_not(rule: Rule, facts: Facts) -> str | None:
    """The first of the rule's conditions that fails, in words; None when all hold."""
    when = rule.when
    if when.kinds and facts.kind not in when.kinds:
        return f"kind is {facts.kind}, not {' or '.join(when.kinds)}"
    if when.images is not None and facts.images != when.images:
        return "the request holds an image" if facts.images else "the request holds no image"
    if when.thinking is not None and facts.thinking != when.thinking:
        return "thinking is on" if facts.thinking else "thinking is off"
    if when.tools is not None and not any(fnmatchcase(n, when.tools) for n in facts.tool_names):
        return f"no tool name matches {when.tools!r}"
    for name, glob in when.headers:
        value = facts.headers.get(name)
        if value is None or not fnmatchcase(value, glob):
            return f"header {name} is {'absent' if value is None else repr(value)}, not {glob!r}"
    if when.min_input_tokens and facts.input_tokens < when.min_input_tokens:
        return f"about {facts.input_tokens} input tokens, under {when.min_input_tokens}"
    return None


def first_rule(rules: Sequence[Rule], facts: Facts) -> Rule | None:
    return next((rule for rule in rules if why_not(rule, facts) is None), None)
