"""The configuration's types: what each section of config.yaml becomes once checked, and the
lookups the sidecar makes in it (a provider by name, by alias, by route)."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from extproc.config.catalogue import Interface
from extproc.config.contract import COMMON, Contract
from extproc.config.pass_through import DEFAULT_PASS_THROUGH
from extproc.config.prices import Price

if TYPE_CHECKING:
    from extproc.config.rules import Rule


EFFORTS = ("low", "medium", "high")
"""What `reasoning_effort` may be on a route or a rule."""


@dataclass(frozen=True)
class RoutePreference:
    name: str
    description: str
    reasoning_effort: str | None = None
    """Set on the requests this route decides, in the provider's own terms (decisions/effort.py)."""


def effort_problem(provider: Provider, effort: str) -> str | None:
    """Why `provider` can't take `effort`, or None: one of EFFORTS, for a model that reasons
    (an Anthropic-format one, or one whose contract says `reasoning`)."""
    if effort not in EFFORTS:
        return f"{effort!r} is not one of {', '.join(EFFORTS)}"
    if provider.interface != "anthropic" and not provider.contract.reasoning:
        return (
            f"{provider.model} takes no reasoning effort (its model family has reasoning: false;"
            " set `reasoning: true` on the provider if it does)"
        )
    return None


@dataclass(frozen=True)
class Provider:
    """One `llm_providers` entry, resolved against the catalogue."""

    name: str
    model: str
    """The full `provider/model` name users and aliases refer to."""
    kind: str
    upstream_model: str
    """What the provider's API calls the model (the part after `provider/`)."""
    interface: Interface
    base_url: str
    access_key: str | None
    missing_key_var: str | None
    """The variable named by `access_key` when it is unset in the environment."""
    default: bool
    routes: tuple[RoutePreference, ...]
    passes_client_auth: bool
    needs_key: bool
    max_tokens: int | None = None
    """Cap on the client's max_tokens (Claude Code asks 32k-64k; many models refuse that)."""
    contract: Contract = COMMON
    """What the model's API requires of a translated request (model_families, `reasoning`)."""
    fallbacks: tuple[str, ...] = ()
    """Entries (by `name` or `model`) that take a request this model can't, in order."""
    price: Price | None = None
    """What its tokens cost (the price table, or the entry's `price:`); None: unknown."""


@dataclass(frozen=True)
class Listener:
    address: str = "127.0.0.1"
    port: int = 12000
    admin_port: int = 9901
    max_body_bytes: int = 32 * 1024 * 1024
    idle_timeout_s: int = 600
    """Silence after which Envoy ends a stream (504 before the answer starts); Claude Code's
    own request timeout is 10 minutes."""
    log_tokens: bool = False
    """Read token counts from Anthropic-format answers for the access log. Costs a sidecar
    round trip per answer chunk; translated answers always have them."""
    max_concurrent_requests: int = 4096
    """Requests in flight at once to each provider, and at the sidecar (Envoy's circuit
    breakers, 1,024 by default); past it, 529 "gateway at its concurrency limit"."""
    max_connections: int = 8192
    """Client connections Envoy holds at once, idle ones included (its overload manager);
    past it, a new one is closed at once. `extproc up` lowers it to what Envoy's open-files
    limit can hold (extproc.control.connections)."""
    request_headers_timeout_s: int = 10
    """Time a client has to send a request's headers once it has begun (Envoy's
    request_headers_timeout): a slower one gets 408 and its connection is closed. 0: none."""
    failover: bool = True
    """A request that fails before its answer begins moves to its decision's next candidate
    (docs/reliability.md#failover). False where Envoy's config is not rendered whole by
    extproc (the mesh examples: their Envoy has no chain routes)."""
    failover_timeout_s: int = 30
    """How long a streamed request waits for a provider's answer to begin (its response
    headers) before it moves to the next candidate (docs/reliability.md#failover). Not for
    whole answers, whose headers come only once the whole answer is written. 0: no limit."""
    cooldown_max_s: int = 300
    """The longest a failing provider rests, skipped by the requests routed to it
    (extproc.decisions.cooldown); 0: providers never rest."""
    decision_headers: bool = True
    """Answers carry the decision (x-extproc-model, -route, -source), added by Envoy from the
    decision metadata; false leaves them out (control/envoy_config.py DECISION_HEADERS)."""


@dataclass(frozen=True)
class SidecarSettings:
    """The `sidecar` section: where Envoy reaches the sidecar and where it listens (the
    running process is `extproc.app.Sidecar`)."""

    address: str = "127.0.0.1"
    """Where Envoy reaches the sidecar: an IP (a STATIC cluster) or a DNS name such as a
    Kubernetes headless Service (a STRICT_DNS cluster, one endpoint per address)."""
    listen_address: str = ""
    """The IP `extproc serve` binds (0.0.0.0 in a pod); empty: `address`, when it is an IP."""
    port: int = 50051
    health_port: int = 50052
    failure_mode_allow: bool = False
    """Envoy's choice when the sidecar can't be reached: false answers 503, true carries on
    unprocessed (no route then, so still an error; see docs/reliability.md)."""
    metadata_namespace: str = "envoy.filters.http.ext_proc"
    """Where the decision goes in Envoy's dynamic metadata (the access log reads it there).
    Envoy Gateway refuses namespaces under `envoy.filters.http.`: use your own there."""

    health_address: str = ""
    """Where the health port listens (default: where `serve` binds). Separate so that /metrics
    can be published while the gRPC port, whose replies carry provider keys, stays private."""

    @property
    def bind_address(self) -> str:
        """The address `extproc serve` listens on."""
        return self.listen_address or self.address

    @property
    def health_host(self) -> str:
        return self.health_address or self.bind_address

    @property
    def health_url(self) -> str:
        """The health endpoint as this machine reaches it (a wildcard address via loopback; an
        IPv6 address in brackets, as a URL writes it)."""
        host = "127.0.0.1" if self.health_host in ("0.0.0.0", "::") else self.health_host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.health_port}"


def is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


ROUTER_MODES = ("constrained", "greedy")
MIN_WINDOW_TOKENS = 32  # below that, the JSON around one message leaves no room for its text
ROUTER_DEVICES = ("auto", "cpu", "cuda")
COMPUTE_TYPES = (
    "auto",
    "default",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
)
"""CTranslate2's compute types, plus `auto` (see
`extproc.decisions.router.engine.pick_compute_type`)."""


@dataclass(frozen=True)
class Routing:
    model_dir: str = "~/.cache/extproc/arch-router-1.5b-ct2-int8"
    device: str = "auto"
    compute_type: str = "auto"
    threads: int = 0
    timeout_ms: int = 5000
    window_tokens: int | str = "auto"
    """Tokens of conversation the router reads: ``auto`` (per device) or a number."""
    mode: str = "constrained"


@dataclass(frozen=True)
class Config:
    path: str
    providers: tuple[Provider, ...]
    aliases: tuple[tuple[str, str], ...]
    """(pattern, provider name) pairs; patterns may be globs such as `claude-*haiku*`."""
    gateway_keys: tuple[str, ...] = ()
    """When set, clients must present one (x-api-key or Bearer); it is never forwarded."""
    pass_through_paths: tuple[str, ...] = DEFAULT_PASS_THROUGH
    """Paths besides Messages that go unread to the `anthropic` provider (extproc.proxy.paths)."""
    listener: Listener = field(default_factory=Listener)
    sidecar: SidecarSettings = field(default_factory=SidecarSettings)
    routing: Routing = field(default_factory=Routing)
    rules: tuple[Rule, ...] = ()
    """The `rules:` section, in order: the first that holds decides, before the router."""
    warnings: tuple[str, ...] = ()
    digest: str = ""
    """Of the file's text: tells which config a running sidecar has loaded."""
    sidecar_secret: str = field(default="", repr=False)
    """What Envoy presents on every ext_proc stream and the sidecar checks (from the
    environment, never from the file); empty: the sidecar serves any caller."""

    @property
    def default_provider(self) -> Provider:
        return next((p for p in self.providers if p.default), self.providers[0])

    @property
    def reads_responses(self) -> bool:
        """Whether the sidecar ever needs an answer's headers: to translate it, or to count
        its tokens. When not, Envoy is told to skip that phase (one round trip less)."""
        return self.listener.log_tokens or any(p.interface != "anthropic" for p in self.providers)

    def provider_named(self, name: str) -> Provider | None:
        """The provider whose `name` or full `provider/model` is `name`."""
        return next((p for p in self.providers if name in (p.name, p.model)), None)

    def alias_target(self, requested: str) -> Provider | None:
        for pattern, target in self.aliases:
            if fnmatchcase(requested, pattern):
                return self.provider_named(target)
        return None

    def provider_serving(self, upstream_model: str) -> Provider | None:
        """The provider serving this bare model name (`claude-x` for `anthropic/claude-x`)."""
        return next((p for p in self.providers if p.upstream_model == upstream_model), None)

    def rule_named(self, name: str) -> Rule:
        return next(rule for rule in self.rules if rule.name == name)

    @functools.cached_property
    def rule_headers(self) -> tuple[str, ...]:
        """The headers rules read, which Envoy must forward to the sidecar."""
        return tuple(sorted({name for rule in self.rules for name, _ in rule.when.headers}))

    @functools.cached_property
    def routes(self) -> tuple[tuple[RoutePreference, Provider], ...]:
        """Every route with its provider, in config order (read on every routed request)."""
        return tuple((r, p) for p in self.providers for r in p.routes)

    @functools.cached_property
    def route_owners(self) -> dict[str, Provider]:
        """The provider each route name sends to."""
        return {route.name: provider for route, provider in self.routes}

    def candidates(self, provider: Provider) -> tuple[Provider, ...]:
        """Who may serve a request routed to `provider`, in the order they are tried: itself,
        each of its fallbacks followed by that one's own, then the default model."""
        return self._candidates.get(provider.name, (provider,))

    @functools.cached_property
    def _candidates(self) -> dict[str, tuple[Provider, ...]]:
        """Each provider's candidates, worked out once per config (read on every request)."""
        lists = {}
        for provider in self.providers:
            seen = {provider.name: provider}
            self._add_fallbacks(provider, seen)
            seen.setdefault(self.default_provider.name, self.default_provider)
            lists[provider.name] = tuple(seen.values())
        return lists

    def _add_fallbacks(self, provider: Provider, seen: dict[str, Provider]) -> None:
        """`provider`'s fallbacks, depth first, into `seen`, each provider once (so a cycle,
        which `extproc check` refuses, can't loop here)."""
        for name in provider.fallbacks:
            fallback = self.provider_named(name)
            if fallback is not None and fallback.name not in seen:
                seen[fallback.name] = fallback
                self._add_fallbacks(fallback, seen)
