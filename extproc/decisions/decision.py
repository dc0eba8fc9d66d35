"""Which configured model serves a request, and the record of why.

The pipeline is an ordered list of stages; the first stage that returns a
decision wins. The classifier is one stage among them (see `extproc.decisions.routing`),
so adding or removing it does not reshape the rest.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from extproc.config import Config, Provider

if TYPE_CHECKING:
    from extproc.decisions.rules import Facts

Source = Literal[
    "explicit", "alias", "rule", "sticky", "router", "requested", "default", "fallback"
]


@dataclass(frozen=True)
class Decision:
    """What was decided for one request; published to Envoy's access log."""

    source: Source
    provider: Provider
    requested_model: str
    route: str = ""
    """The route, or the rule's name when a rule decided (`source: rule`, or `sticky` after)."""
    router_ms: float = 0.0
    note: str = ""
    """Why a fallback happened (router missing, timed out, failed), for the log."""
    reasoning_effort: str | None = None
    """The deciding route's or rule's `reasoning_effort` (decisions/effort.py applies it)."""
    cooled: tuple[str, ...] = ()
    """Candidates passed over because they were cooling down (the metrics count them)."""

    @property
    def routed_model(self) -> str:
        return self.provider.model

    def metadata(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "route": self.route,
            "requested_model": self.requested_model,
            "routed_model": self.routed_model,
            "provider": self.provider.name,
            "router_ms": round(self.router_ms, 2),
            "note": self.note,
        }


@dataclass(frozen=True)
class Request:
    """What the stages may look at."""

    model: str
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    """The request headers Envoy forwards (lower-case names): those rules read among them."""
    size: int = 0
    """The body's length in bytes: rules' input-token estimate starts from it."""

    @functools.cached_property
    def facts(self) -> Facts:
        """What rules and the capability check read of the body, each worked out once."""
        # Imported here: rules reads capability, which builds on this module's Decision.
        from extproc.decisions.rules import Facts

        return Facts(self.body, self.headers, self.size)


Stage = Callable[[Config, Request], Awaitable[Decision | None]]


async def explicit(config: Config, request: Request) -> Decision | None:
    """The client named a configured model by its full name (`/model openai/gpt-4.1`)."""
    provider = config.provider_named(request.model)
    return provider and Decision("explicit", provider, request.model)


async def alias(config: Config, request: Request) -> Decision | None:
    provider = config.alias_target(request.model)
    return provider and Decision("alias", provider, request.model)


async def requested(config: Config, request: Request) -> Decision | None:
    """The requested bare model name is one we serve (`claude-x` for `anthropic/claude-x`)."""
    provider = config.provider_serving(request.model)
    return provider and Decision("requested", provider, request.model)


async def default(config: Config, request: Request) -> Decision | None:
    return Decision("default", config.default_provider, request.model)


BEFORE_ROUTER: tuple[Stage, ...] = (explicit, alias)
AFTER_ROUTER: tuple[Stage, ...] = (requested, default)


async def decide(config: Config, request: Request, stages: Sequence[Stage]) -> Decision:
    for stage in stages:
        decision = await stage(config, request)
        if decision is not None:
            return decision
    raise AssertionError("the default stage always decides")
