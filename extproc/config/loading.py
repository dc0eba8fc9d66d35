"""Loading config.yaml: read it, check every section, apply the environment's overrides.

The format is the seed's (archgw's) `llm_providers` list, plus a few sections of
our own. Every mistake is reported as one line that names the file, the line
and the field, and all mistakes are reported at once.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

from extproc.config.checks import (
    check_fallbacks,
    check_listen_address,
    check_ports,
    check_routing,
    check_sidecar,
    check_sidecar_secret,
    check_uniqueness,
    read_aliases,
    read_families,
    read_gateway_keys,
    read_pass_through_paths,
    read_provider,
    read_section,
)
from extproc.config.reader import Checker, ConfigError, Problem, read_yaml
from extproc.config.rules import read_rules
from extproc.config.settings import Config, Listener, Routing, SidecarSettings

DEFAULT_CONFIG = "config.yaml"
LISTEN_ADDRESS_VAR = "EXTPROC_LISTEN_ADDRESS"
"""When set, replaces listener.address and sidecar.health_address: the Docker image sets it to
0.0.0.0 so that its published ports reach the gateway, whatever config.yaml is mounted."""

SIDECAR_SECRET_VAR = "EXTPROC_SIDECAR_SECRET"
"""The secret Envoy must present to the sidecar. Read from the environment only: config.yaml
may live in a ConfigMap or a repository."""

_TOP_KEYS = {
    "llm_providers",
    "model_families",
    "model_aliases",
    "gateway_keys",
    "pass_through_paths",
    "listener",
    "sidecar",
    "routing",
    "rules",
    "version",
}


def parse(text: str, file: str = DEFAULT_CONFIG) -> Config:
    """Validate config text; raises ConfigError listing every problem."""
    raw, lines = read_yaml(text, file)
    check = Checker(file, lines)
    raw = check.mapping(raw, "", _TOP_KEYS)
    entries = check.typed(raw.get("llm_providers"), "llm_providers", list, [])
    if not entries:
        check.error("llm_providers", "configure at least one provider under llm_providers")
    gateway_keys = read_gateway_keys(check, raw.get("gateway_keys"))
    families = read_families(check, raw.get("model_families"))
    providers = []
    for i, entry in enumerate(entries):
        provider = read_provider(
            check, entry, f"llm_providers[{i}]", client_auth=not gateway_keys, families=families
        )
        if provider:
            providers.append((f"llm_providers[{i}]", provider))
    check_uniqueness(check, providers)
    check_fallbacks(check, providers)
    names = {p.name for _, p in providers} | {p.model for _, p in providers}
    aliases = read_aliases(check, raw.get("model_aliases"), names)
    by_name = {key: p for _, p in reversed(providers) for key in (p.name, p.model)}
    route_names = {route.name for _, p in providers for route in p.routes}
    rules = read_rules(check, raw.get("rules"), by_name, route_names)
    pass_through_paths = read_pass_through_paths(check, raw.get("pass_through_paths"))
    listener = read_section(check, raw, "listener", Listener)
    sidecar = read_section(check, raw, "sidecar", SidecarSettings)
    check_sidecar(check, sidecar)
    sidecar_secret = os.environ.get(SIDECAR_SECRET_VAR, "")
    check_sidecar_secret(check, sidecar, sidecar_secret, SIDECAR_SECRET_VAR)
    routing = read_section(check, raw, "routing", Routing)
    check_ports(check, listener, sidecar)
    check_listen_address(check, listener.address)
    listen_address = os.environ.get(LISTEN_ADDRESS_VAR)
    if listen_address:
        check_listen_address(check, listen_address, f"{LISTEN_ADDRESS_VAR}=")
        listener = replace(listener, address=listen_address)
        sidecar = replace(sidecar, health_address=listen_address)
    check_routing(check, routing)
    if check.problems:
        raise ConfigError(check.problems)
    return Config(
        path=file,
        providers=tuple(p for _, p in providers),
        aliases=tuple(aliases),
        gateway_keys=gateway_keys,
        pass_through_paths=pass_through_paths,
        listener=listener,
        sidecar=sidecar,
        routing=routing,
        rules=rules,
        warnings=tuple(check.warnings),
        digest=hashlib.sha256(text.encode()).hexdigest()[:16],
        sidecar_secret=sidecar_secret,
    )


def read_text(path: str | os.PathLike[str]) -> str:
    """A config file's text (`extproc up` keeps the text it accepted); a file that can't be
    read is a ConfigError too."""
    file = os.fspath(path)
    try:
        return Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(file, 1, "file", exc.strerror or str(exc))]) from None
    except UnicodeDecodeError:
        raise ConfigError([Problem(file, 1, "file", "is not UTF-8 text")]) from None


def load(path: str | os.PathLike[str] = DEFAULT_CONFIG) -> Config:
    """Read and validate a config file."""
    return parse(read_text(path), os.fspath(path))
