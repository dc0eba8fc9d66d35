"""config.yaml: its settings types, loading, `$VAR` expansion and validation with file:line
errors.

The configuration is a leaf: it imports nothing of the running gateway, which reads it.

- `settings`: what each section becomes (`Config`, `Provider`, ...) and the lookups in it;
- `catalogue`: what each `provider/` prefix means; `contract`: what each model family's API
  requires; `pass_through`: what a `pass_through_paths` entry may be;
- `reader`: the YAML with each value's line, and the `Checker` that collects mistakes;
- `checks`: one check per section; `loading`: `load` and `parse`, which run them all, and
  `read_text`.
"""

from __future__ import annotations

from extproc.config.loading import (
    DEFAULT_CONFIG,
    LISTEN_ADDRESS_VAR,
    SIDECAR_SECRET_VAR,
    load,
    parse,
    read_text,
)
from extproc.config.reader import ConfigError, Problem
from extproc.config.settings import (
    COMPUTE_TYPES,
    MIN_WINDOW_TOKENS,
    ROUTER_DEVICES,
    ROUTER_MODES,
    Config,
    Listener,
    Provider,
    RoutePreference,
    Routing,
    SidecarSettings,
    is_ip,
)

__all__ = [
    "COMPUTE_TYPES",
    "DEFAULT_CONFIG",
    "LISTEN_ADDRESS_VAR",
    "MIN_WINDOW_TOKENS",
    "ROUTER_DEVICES",
    "ROUTER_MODES",
    "SIDECAR_SECRET_VAR",
    "Config",
    "ConfigError",
    "Listener",
    "Problem",
    "Provider",
    "RoutePreference",
    "Routing",
    "SidecarSettings",
    "is_ip",
    "load",
    "parse",
    "read_text",
]
