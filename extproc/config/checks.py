"""The checks of each section of config.yaml: each reads its part of the document into the
settings types and records every mistake it finds with the `Checker`."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, get_args

from extproc.config.catalogue import CATALOGUE, INTERFACE_NAMES, ProviderKind
from extproc.config.contract import (
    COMMON,
    CONTRACT_FIELDS,
    ModelFamily,
    TokenField,
    ToolsEffort,
    contract_for,
)
from extproc.config.pass_through import DEFAULT_PASS_THROUGH, pattern_problem
from extproc.config.prices import Price, price_for
from extproc.config.reader import Checker
from extproc.config.settings import (
    COMPUTE_TYPES,
    MIN_WINDOW_TOKENS,
    ROUTER_DEVICES,
    ROUTER_MODES,
    Listener,
    Provider,
    RoutePreference,
    Routing,
    SidecarSettings,
    effort_problem,
    is_ip,
)

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
"""What no header value may hold: a key or model name with one could split or forge headers."""
_ROUTE_NAME = re.compile(r"^[^\"\\\x00-\x1f]{1,64}$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")
_NAMESPACE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_BASE_URL = re.compile(r"^https?://(?P<host>[^/:\s]+)(:(?P<port>\d+))?(/[^\s?#]*)?$")
"""Scheme, host, port, path: no user info, query or fragment (they would send requests
elsewhere, or be dropped)."""
_URL_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_URL_HOST = re.compile(rf"^(?=.{{1,253}}$){_URL_LABEL}(\.{_URL_LABEL})*\.?$")
"""A DNS name (a Docker service's may hold `_`); IPv4 addresses match it too."""
PORTS = (1, 65535)
BOUNDS: dict[str, tuple[int, int | None]] = {
    "listener.port": PORTS,
    "listener.admin_port": PORTS,
    "sidecar.port": PORTS,
    "sidecar.health_port": PORTS,
    "listener.max_body_bytes": (1, 2**30),
    "listener.max_concurrent_requests": (1, 1_000_000),
    "listener.max_connections": (1, 2**63 - 1),
    "listener.idle_timeout_s": (0, 86_400),
    "listener.request_headers_timeout_s": (0, 86_400),
    "listener.failover_timeout_s": (0, 86_400),
    "listener.cooldown_max_s": (0, 86_400),
    "routing.timeout_ms": (0, 600_000),
}
"""What each number may be, where more than "not negative": ports that exist, and what Envoy's
fields hold (sizes and counts of 32 bits, an ext_proc timeout under an hour), with room; a
connection limit of at least 1 (0 would refuse every client) that fits Envoy's int64."""
_PROVIDER_KEYS = {
    "model",
    "name",
    "access_key",
    "base_url",
    "provider_interface",
    "default",
    "routing_preferences",
    "max_tokens",
    "reasoning",
    "fallbacks",
    "context_window",
    "price",
}
_PRICE_KEYS = ("input", "output", "cache_read", "cache_write")


def read_section(check: Checker, raw: dict[str, Any], name: str, cls: type) -> Any:
    """Read a flat section whose keys and types are a dataclass's fields."""
    defaults = cls()
    fields = cls.__dataclass_fields__
    values = check.mapping(raw.get(name), name, set(fields))
    kwargs = {}
    for key in fields:
        default = getattr(defaults, key)
        value = values.get(key)
        if isinstance(value, str) and not isinstance(default, str):
            value, unset = check.expand(value, f"{name}.{key}")
            if unset:
                check.error(f"{name}.{key}", f"environment variable {unset} is not set")
                value = None
            value = int(value) if value and value.isdigit() else value
        kind = (int, str) if fields[key].type == "int | str" else type(default)
        kwargs[key] = check.typed(value, f"{name}.{key}", kind, default)
        bounds = BOUNDS.get(f"{name}.{key}", (0, None))
        number = isinstance(default, int) and not isinstance(default, bool)
        if number and not _in_range(kwargs[key], bounds):
            check.error(f"{name}.{key}", _out_of_range(kwargs[key], bounds))
            kwargs[key] = default
    return cls(**kwargs)


def _in_range(value: int, bounds: tuple[int, int | None]) -> bool:
    low, high = bounds
    return low <= value and (high is None or value <= high)


def _out_of_range(value: int, bounds: tuple[int, int | None]) -> str:
    low, high = bounds
    allowed = f"must be between {low} and {high}" if high is not None else "must not be negative"
    return f"{value} is out of range: {allowed}"


def read_provider(
    check: Checker,
    entry: Any,
    where: str,
    client_auth: bool = True,
    families: tuple[ModelFamily, ...] = (),
) -> Provider | None:
    """`client_auth` False: clients send gateway keys, so none of theirs passes through.
    `families`: the config's own model_families rows."""
    entry = check.mapping(entry, where, _PROVIDER_KEYS)
    model = check.typed(entry.get("model"), f"{where}.model", str, "")
    if not model:
        check.error(where, "missing `model` (write it as provider/model, e.g. openai/gpt-4.1)")
        return None
    kind_name, slash, upstream_model = model.partition("/")
    if not slash or not kind_name or not upstream_model:
        check.error(
            f"{where}.model",
            f"{model!r} has no provider prefix; write it as provider/model, e.g. openai/{model}",
        )
        return None
    kind = CATALOGUE.get(kind_name)
    base_url = check.typed(entry.get("base_url"), f"{where}.base_url", str, "")
    base_url, unset = check.expand(base_url, f"{where}.base_url")
    if unset:
        check.error(f"{where}.base_url", f"environment variable {unset} is not set")
    interface = check.typed(
        entry.get("provider_interface"),
        f"{where}.provider_interface",
        str,
        kind.interface if kind else "",
    )
    if interface and interface not in INTERFACE_NAMES:
        names = ", ".join(INTERFACE_NAMES)
        check.error(f"{where}.provider_interface", f"{interface!r} is not one of {names}")
    interface = INTERFACE_NAMES.get(interface, "")
    if kind is None:
        known = ", ".join(CATALOGUE)
        if not base_url or not interface:
            check.error(
                f"{where}.model",
                f"unknown provider {kind_name!r} (known: {known}); a custom provider needs "
                "base_url and provider_interface (anthropic, openai-chat or openai-responses)",
            )
            return None
        kind = ProviderKind(kind_name, interface, None)
    base_url = base_url or kind.base_url or ""
    if not base_url:
        check.error(where, f"provider {kind_name!r} needs base_url (e.g. http://localhost:11434)")
        return None
    url = _BASE_URL.match(base_url)
    if not url:
        check.error(f"{where}.base_url", f"{base_url!r} is not an http(s) URL")
        return None
    if not _URL_HOST.match(url["host"]):
        check.error(f"{where}.base_url", f"{url['host']!r} is not a host name or IPv4 address")
        return None
    if url["port"] and not _in_range(int(url["port"]), PORTS):
        check.error(f"{where}.base_url", f"port {_out_of_range(int(url['port']), PORTS)}")
        return None
    key_text = check.typed(entry.get("access_key"), f"{where}.access_key", str, "")
    key, missing_var = check.expand(key_text, f"{where}.access_key")
    if CONTROL_CHARACTERS.search(key):
        # Envoy refuses such a header value on every request; the key itself is not shown.
        check.error(f"{where}.access_key", "the key contains a control character (CR, LF, ...)")
    if missing_var:
        then = (
            "the client's own credentials will pass through"
            if kind.passes_client_auth and client_auth
            else "requests routed to it will fail with authentication_error"
        )
        check.warn(f"{where}.access_key", f"environment variable {missing_var} is not set; {then}")
    routes = []
    prefs = check.typed(entry.get("routing_preferences"), f"{where}.routing_preferences", list, [])
    for i, pref in enumerate(prefs):
        pwhere = f"{where}.routing_preferences[{i}]"
        pref = check.mapping(pref, pwhere, {"name", "description", "reasoning_effort"})
        name = check.typed(pref.get("name"), f"{pwhere}.name", str, "")
        description = check.typed(pref.get("description"), f"{pwhere}.description", str, "")
        effort = check.typed(pref.get("reasoning_effort"), f"{pwhere}.reasoning_effort", str, None)
        if not name or not description:
            check.error(pwhere, "a routing preference needs both name and description")
        elif not _ROUTE_NAME.match(name) or name == "other":
            check.error(
                f"{pwhere}.name",
                f"{name!r} can't be a route name (1-64 characters, no quotes, not 'other')",
            )
        else:
            routes.append((pwhere, RoutePreference(name, description.strip(), effort)))
    reasoning = check.typed(entry.get("reasoning"), f"{where}.reasoning", bool, None)
    overrides: dict[str, object] = {} if reasoning is None else {"reasoning": reasoning}
    window = check.typed(entry.get("context_window"), f"{where}.context_window", int, None)
    if window is not None and window < 1:
        check.error(f"{where}.context_window", "must be a number of tokens (at least 1)")
    elif window is not None:
        overrides["context_window"] = window
    fallbacks = check.typed(entry.get("fallbacks"), f"{where}.fallbacks", list, [])
    provider = Provider(
        name=check.typed(entry.get("name"), f"{where}.name", str, model),
        model=model,
        kind=kind.name,
        upstream_model=upstream_model,
        interface=interface or kind.interface,  # type: ignore[arg-type]
        base_url=base_url.rstrip("/"),
        access_key=key or None,
        missing_key_var=missing_var if not key else None,
        default=check.typed(entry.get("default"), f"{where}.default", bool, False),
        routes=tuple(route for _, route in routes),
        passes_client_auth=kind.passes_client_auth and client_auth,
        needs_key=kind.needs_key,
        max_tokens=check.typed(entry.get("max_tokens"), f"{where}.max_tokens", int, None),
        contract=contract_for(kind.name, upstream_model, families, **overrides),
        fallbacks=tuple(
            check.typed(name, f"{where}.fallbacks[{i}]", str, "")
            for i, name in enumerate(fallbacks)
        ),
        price=read_price(check, entry.get("price"), f"{where}.price")
        or price_for(kind.name, upstream_model),
    )
    for pwhere, route in routes:
        problem = route.reasoning_effort and effort_problem(provider, route.reasoning_effort)
        if problem:
            check.error(f"{pwhere}.reasoning_effort", problem)
    return provider


def read_price(check: Checker, raw: Any, where: str) -> Price | None:
    """An entry's own `price:` (USD per million tokens), or None when it has none or it is
    wrong. `input` and `output` are required; a cache price left out is the input price (a
    provider that bills cached tokens like any other)."""
    if raw is None:
        return None
    entry = check.mapping(raw, where, set(_PRICE_KEYS))
    if not isinstance(raw, dict):
        return None
    values: dict[str, float] = {}
    for key in _PRICE_KEYS:
        value = entry.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            check.error(f"{where}.{key}", f"expected USD per million tokens, got {value!r}")
        elif value < 0:
            check.error(f"{where}.{key}", f"{value} is out of range: must not be negative")
        else:
            values[key] = float(value)
    for key in ("input", "output"):
        if key not in values and entry.get(key) is None:
            check.error(where, f"missing `{key}` (USD per million tokens)")
    if "input" not in values or "output" not in values:
        return None
    cached = {key: values.get(key, values["input"]) for key in ("cache_read", "cache_write")}
    return Price(values["input"], values["output"], **cached, source="config.yaml")


_CHOICES: dict[str, tuple[str, ...]] = {
    "token_field": get_args(TokenField),
    "tools_effort": get_args(ToolsEffort),
}


def read_families(check: Checker, raw: Any) -> tuple[ModelFamily, ...]:
    """The config's `model_families` rows: `provider` and `model` globs, and contract fields."""
    rows = []
    for i, entry in enumerate(check.typed(raw, "model_families", list, [])):
        where = f"model_families[{i}]"
        entry = check.mapping(entry, where, {"provider", "model", *CONTRACT_FIELDS})
        provider = check.typed(entry.get("provider"), f"{where}.provider", str, "*")
        model = check.typed(entry.get("model"), f"{where}.model", str, "")
        if not model:
            check.error(where, "a model family needs `model` (a name or a glob such as gpt-5*)")
            continue
        settings = []
        for key, value in entry.items():
            if key in CONTRACT_FIELDS:
                default = getattr(COMMON, key)
                settings.append((key, check.typed(value, f"{where}.{key}", type(default), default)))
        for key, allowed in _CHOICES.items():
            if key in entry and entry[key] not in allowed:
                check.error(f"{where}.{key}", f"must be one of {', '.join(allowed)}")
        limit = entry.get("tool_name_max", 64)
        if isinstance(limit, int) and not 16 <= limit <= 128:
            check.error(f"{where}.tool_name_max", "must be between 16 and 128")
        rows.append(ModelFamily(provider, model, tuple(settings)))
    return tuple(rows)


def read_gateway_keys(check: Checker, raw: Any) -> tuple[str, ...]:
    """Keys clients must present; an unset variable is an error, or the gateway would be open."""
    keys = []
    for i, value in enumerate(check.typed(raw, "gateway_keys", list, [])):
        where = f"gateway_keys[{i}]"
        key, unset = check.expand(check.typed(value, where, str, ""), where)
        if unset:
            check.error(where, f"environment variable {unset} is not set")
        elif len(key) < 16:
            check.error(where, "a gateway key needs at least 16 characters")
        else:
            keys.append(key)
    return tuple(keys)


def read_pass_through_paths(check: Checker, raw: Any) -> tuple[str, ...]:
    if raw is None:
        return DEFAULT_PASS_THROUGH
    paths = []
    for i, value in enumerate(check.typed(raw, "pass_through_paths", list, [])):
        where = f"pass_through_paths[{i}]"
        path = check.typed(value, where, str, "")
        problem = pattern_problem(path)
        if problem:
            check.error(where, problem)
        else:
            paths.append(path)
    return tuple(paths)


def check_uniqueness(check: Checker, providers: list[tuple[str, Provider]]) -> None:
    seen_names: dict[str, str] = {}
    seen_routes: dict[str, str] = {}
    defaults = []
    for where, p in providers:
        if p.name in seen_names:
            check.error(
                f"{where}.name", f"provider name {p.name!r} is already used at {seen_names[p.name]}"
            )
        seen_names.setdefault(p.name, f"line {check.line(where)}")
        for i, r in enumerate(p.routes):
            rwhere = f"{where}.routing_preferences[{i}].name"
            if r.name in seen_routes:
                check.error(
                    rwhere, f"route name {r.name!r} is already used at {seen_routes[r.name]}"
                )
            seen_routes.setdefault(r.name, f"line {check.line(rwhere)}")
        if p.default:
            defaults.append(where)
    for where in defaults[1:]:
        check.error(f"{where}.default", f"only one provider may be the default ({defaults[0]} is)")


def check_fallbacks(check: Checker, providers: list[tuple[str, Provider]]) -> None:
    """Each fallback names a configured entry, and no chain of fallbacks comes back to where
    it started (the candidates would then depend on where the walk began)."""
    by_name = {key: p for _, p in providers for key in (p.name, p.model)}
    for where, provider in providers:
        for i, name in enumerate(provider.fallbacks):
            if name not in by_name:
                choices = ", ".join(sorted(p.name for _, p in providers))
                check.error(
                    f"{where}.fallbacks[{i}]", f"unknown fallback {name!r} (configured: {choices})"
                )
    reported: set[frozenset[str]] = set()
    for where, provider in providers:
        found = _cycle_from(provider, by_name)
        if found and frozenset(found[1]) not in reported:
            reported.add(frozenset(found[1]))
            check.error(f"{where}.fallbacks[{found[0]}]", "fallback cycle: " + " → ".join(found[1]))


def _cycle_from(start: Provider, by_name: dict[str, Provider]) -> tuple[int, list[str]] | None:
    """A chain of fallbacks that leads from `start` back to it, with the index of the
    fallback of `start` it begins with; None when there is none."""
    explored: set[str] = set()  # entries that can't lead back: each is walked once

    def walk(names: tuple[str, ...], path: list[str]) -> list[str] | None:
        for name in names:
            fallback = by_name.get(name)
            if fallback is None or (fallback.name in explored and fallback.name != start.name):
                continue
            if fallback.name == start.name:
                return [*path, start.name]
            explored.add(fallback.name)
            cycle = walk(fallback.fallbacks, [*path, fallback.name])
            if cycle:
                return cycle
        return None

    for i, name in enumerate(start.fallbacks):
        cycle = walk((name,), [start.name])
        if cycle:
            return i, cycle
    return None


def read_aliases(check: Checker, raw: Any, names: set[str]) -> list[tuple[str, str]]:
    aliases = []
    for pattern, target in check.mapping(raw, "model_aliases", set(raw or {})).items():
        where = f"model_aliases.{pattern}"
        if isinstance(target, dict):
            target = check.mapping(target, where, {"target"}).get("target")
            where = f"{where}.target"
        if not isinstance(target, str) or target not in names:
            choices = ", ".join(sorted(names))
            check.error(where, f"alias target {target!r} is not a configured model ({choices})")
            continue
        aliases.append((str(pattern), target))
    return aliases


def check_ports(check: Checker, listener: Listener, sidecar: SidecarSettings) -> None:
    """Each port is bound once: two settings sharing one would fail only when `up` binds it."""
    used: dict[int, str] = {}
    for where, port in (
        ("listener.port", listener.port),
        ("listener.admin_port", listener.admin_port),
        ("sidecar.port", sidecar.port),
        ("sidecar.health_port", sidecar.health_port),
    ):
        if port in used:
            check.error(where, f"port {port} is already used by {used[port]}")
        used.setdefault(port, where)


def check_listen_address(check: Checker, address: str, source: str = "") -> None:
    """Envoy binds the listener's address: an IP (a name would stop Envoy at start).
    `source` names where it came from when not config.yaml."""
    if not is_ip(address):
        check.error(
            "listener.address",
            f"{source}{address!r} is not an IP address (Envoy listens on it: 127.0.0.1, or "
            "0.0.0.0 for every interface)",
        )


def check_sidecar(check: Checker, sidecar: SidecarSettings) -> None:
    """`address` is Envoy's way to the sidecar, `listen_address` what `serve` binds: a mix-up
    of the two is caught here rather than by Envoy or the kernel at start."""
    address, listen = sidecar.address, sidecar.listen_address
    if is_ip(address) and ipaddress.ip_address(address).is_unspecified:
        check.error(
            "sidecar.address",
            f"Envoy can't connect to {address}: set sidecar.listen_address: {address} to listen "
            "on every interface, and sidecar.address to the IP or name Envoy reaches it by",
        )
    elif not is_ip(address) and not _HOST_NAME.match(address):
        check.error("sidecar.address", f"{address!r} is neither an IP address nor a DNS name")
    elif not is_ip(address) and not listen:
        check.error(
            "sidecar.listen_address",
            f"sidecar.address {address!r} is a name (Envoy resolves it); set "
            "sidecar.listen_address to the IP extproc serve binds (0.0.0.0 in a pod)",
        )
    if listen and not is_ip(listen):
        check.error(
            "sidecar.listen_address",
            f"{listen!r} must be an IP address of this machine (0.0.0.0 for every interface)",
        )
    if not _NAMESPACE.match(sidecar.metadata_namespace):
        check.error(
            "sidecar.metadata_namespace",
            f"{sidecar.metadata_namespace!r} must be letters, digits, '.', '_' or '-' "
            "(it is written into Envoy's access log format)",
        )


_HEADER_TOKEN = re.compile(r"^[\x21-\x7e]+$")


def check_sidecar_secret(
    check: Checker, sidecar: SidecarSettings, secret: str, variable: str
) -> None:
    """The secret travels as a gRPC header value. Without one, a sidecar that other hosts can
    reach answers them too, and its replies carry provider keys."""
    if secret and not _HEADER_TOKEN.match(secret):
        check.error(
            "sidecar",
            f"environment variable {variable} must be printable ASCII without spaces (Envoy "
            "sends it as a gRPC header); `openssl rand -hex 32` makes one",
        )
    address = sidecar.bind_address
    if not secret and is_ip(address) and not ipaddress.ip_address(address).is_loopback:
        check.warn(
            "sidecar.listen_address" if sidecar.listen_address else "sidecar.address",
            f"the sidecar listens on {address} and {variable} is not set: anything that "
            f"reaches port {sidecar.port} can ask it for provider keys (docs/reliability.md)",
        )


def check_routing(check: Checker, routing: Routing) -> None:
    """Each choice is one the router knows, and the window holds at least one message."""
    for key, allowed in (
        ("mode", ROUTER_MODES),
        ("device", ROUTER_DEVICES),
        ("compute_type", COMPUTE_TYPES),
    ):
        value = getattr(routing, key)
        if value not in allowed:
            check.error(f"routing.{key}", f"{value!r} is not one of {', '.join(allowed)}")
    window = routing.window_tokens
    if window != "auto" and not (isinstance(window, int) and window >= MIN_WINDOW_TOKENS):
        check.error(
            "routing.window_tokens", f"{window!r}: write auto or at least {MIN_WINDOW_TOKENS}"
        )
