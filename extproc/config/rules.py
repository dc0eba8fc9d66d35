"""The `rules:` section: decisions the gateway makes from what a request is, before the router.

Each rule has a `name`, a `when:` mapping whose conditions must all hold, and the `model`
(a provider entry's model or name) it sends to. The checks here refuse what would never
act as written: an unknown condition or kind, a model that isn't configured, and a rule
that an earlier one always takes first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

from extproc.config.reader import Checker
from extproc.config.settings import Provider, effort_problem

Kind = Literal["main", "tool_result", "subagent", "compact", "title", "web_search"]
KINDS: tuple[str, ...] = get_args(Kind)
"""Claude Code's requests by kind (extproc.decisions.kinds reads them)."""
CREDENTIAL_HEADERS = ("authorization", "x-api-key")
"""Never forwarded to the sidecar for a rule: it would then hold every client's key."""
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")
CONDITIONS = ("kind", "images", "min_input_tokens", "thinking", "tools", "header", "subagent")


@dataclass(frozen=True)
class When:
    """A rule's conditions; None (or empty) is a condition the rule doesn't set."""

    kinds: tuple[str, ...] = ()
    images: bool | None = None
    min_input_tokens: int = 0
    thinking: bool | None = None
    tools: str | None = None
    """A glob that some tool's name matches."""
    headers: tuple[tuple[str, str], ...] = ()
    """(lower-case name, glob on its value) pairs."""

    def implies(self, other: When) -> bool:
        """Whether every request `self` holds for is one `other` holds for too (`other`'s
        conditions are a subset of these): a rule after `other` with these never decides."""
        return (
            (not other.kinds or (bool(self.kinds) and set(self.kinds) <= set(other.kinds)))
            and other.images in (None, self.images)
            and other.thinking in (None, self.thinking)
            and self.min_input_tokens >= other.min_input_tokens
            and other.tools in (None, self.tools)
            and set(other.headers) <= set(self.headers)
        )


@dataclass(frozen=True)
class Rule:
    name: str
    when: When
    provider: Provider
    reasoning_effort: str | None = None


def read_rules(
    check: Checker, raw: Any, providers: dict[str, Provider], routes: set[str]
) -> tuple[Rule, ...]:
    """`providers`: by name and by full model name; `routes`: route names, which a rule's
    name may not take (both appear as `route` in the access log)."""
    rules: list[tuple[str, Rule]] = []
    names: dict[str, str] = {}
    for i, entry in enumerate(check.typed(raw, "rules", list, [])):
        where = f"rules[{i}]"
        entry = check.mapping(entry, where, {"name", "when", "model", "reasoning_effort"})
        name = check.typed(entry.get("name"), f"{where}.name", str, "")
        model = check.typed(entry.get("model"), f"{where}.model", str, "")
        effort = check.typed(entry.get("reasoning_effort"), f"{where}.reasoning_effort", str, None)
        if not name:
            check.error(where, "a rule needs a name")
        elif name in names:
            check.error(f"{where}.name", f"rule name {name!r} is already used at {names[name]}")
        elif name in routes:
            check.error(f"{where}.name", f"{name!r} is a route's name; give the rule its own")
        names.setdefault(name, f"line {check.line(f'{where}.name')}")
        provider = providers.get(model)
        if provider is None:
            choices = ", ".join(sorted(providers))
            check.error(f"{where}.model", f"{model!r} is not a configured model ({choices})")
        when = _read_when(check, entry.get("when"), f"{where}.when")
        if when is None or provider is None:
            continue
        problem = effort and effort_problem(provider, effort)
        if problem:
            check.error(f"{where}.reasoning_effort", problem)
            continue
        earlier = next((w for w, rule in rules if when.implies(rule.when)), None)
        if earlier is not None:
            check.error(
                f"{where}.when",
                f"no request can reach this rule: {earlier} holds for every request it "
                "holds for, and comes first",
            )
            continue
        rules.append((where, Rule(name, when, provider, effort)))
    return tuple(rule for _, rule in rules)


def _read_when(check: Checker, raw: Any, where: str) -> When | None:
    problems = len(check.problems)
    values = check.mapping(raw, where, set(CONDITIONS))
    kinds = values.get("kind", [])
    kinds = [kinds] if isinstance(kinds, str) else check.typed(kinds, f"{where}.kind", list, [])
    for kind in kinds:
        if kind not in KINDS:
            check.error(f"{where}.kind", f"{kind!r} is not a kind ({', '.join(KINDS)})")
    if "kind" in values and not kinds:
        check.error(f"{where}.kind", "name at least one kind")
    minimum = check.typed(values.get("min_input_tokens"), f"{where}.min_input_tokens", int, 0)
    if minimum < 0:
        check.error(f"{where}.min_input_tokens", "must not be negative")
    headers = check.typed(values.get("header"), f"{where}.header", dict, {})
    for header, glob in headers.items():
        hwhere = f"{where}.header.{header}"
        if not _HEADER_NAME.match(str(header).lower()):
            check.error(hwhere, f"{header!r} is not a header name")
        elif str(header).lower() in CREDENTIAL_HEADERS:
            check.error(hwhere, "rules can't read credentials (the sidecar never sees them)")
        check.typed(glob, hwhere, str, "")
    if "subagent" in values:
        check.error(
            f"{where}.subagent",
            "Claude Code (2.1.197) does not send a subagent's name, only that a request is a "
            "subagent's: write `kind: subagent`, or give the agent `model: provider/name` in "
            "its .claude/agents/*.md front matter",
        )
    when = When(
        kinds=tuple(kinds),
        images=check.typed(values.get("images"), f"{where}.images", bool, None),
        min_input_tokens=minimum,
        thinking=check.typed(values.get("thinking"), f"{where}.thinking", bool, None),
        tools=check.typed(values.get("tools"), f"{where}.tools", str, None),
        headers=tuple((str(h).lower(), str(g)) for h, g in headers.items()),
    )
    return when if len(check.problems) == problems else None
