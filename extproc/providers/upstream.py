"""Where a provider lives: its Envoy cluster, upstream path and auth headers.

Both the Envoy config renderer and the request processor use these functions,
so the cluster a request is sent to always exists in the rendered config.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import urlsplit

from extproc.config import Config, Provider
from extproc.config.catalogue import Interface
from extproc.errors import GatewayError

CLUSTER_HEADER = "x-extproc-cluster"
"""The header Envoy's route reads to pick the cluster; always set by the sidecar."""

# Path appended to the provider's base URL for a Messages request, per interface.
MESSAGES_PATH: dict[Interface, str] = {
    "anthropic": "/v1/messages",
    "openai": "/chat/completions",
    "openai-responses": "/responses",
}

# Paths that differ from the interface default for one provider kind.
PATH_OVERRIDES: dict[tuple[str, Interface], str] = {
    # Ollama serves its OpenAI-compatible API under /v1 of the server root.
    ("ollama", "openai"): "/v1/chat/completions",
    ("ollama", "openai-responses"): "/v1/responses",
}

# Client credential headers: they are Anthropic credentials and never go anywhere else.
CLIENT_AUTH_HEADERS = ("x-api-key", "authorization")


def auth_headers(interface: Interface, key: str) -> dict[str, str]:
    """The header that carries `key` for a provider speaking `interface`."""
    if interface == "anthropic":
        return {"x-api-key": key}
    return {"authorization": f"Bearer {key}"}


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int
    path_prefix: str

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def key(self) -> tuple[str, str, int]:
        """What tells two upstreams apart (the path is each provider's own)."""
        return self.scheme, self.host, self.port

    @functools.cached_property
    def readable(self) -> str:
        """`api.openai.com:443` → `api_openai_com_443`: its cluster's name, unless another
        origin of the config reads the same (`a-b.c` and `a.b_c`, `http` and `https`)."""
        return re.sub(r"[^A-Za-z0-9]+", "_", f"{self.host}_{self.port}")


def origin(provider: Provider) -> Origin:
    return _origin(provider.base_url)


@functools.lru_cache(maxsize=256)
def _origin(base_url: str) -> Origin:
    """Parsed once per URL: every request asks for its provider's origin, twice."""
    parts = urlsplit(base_url)
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    return Origin(parts.scheme, parts.hostname or "", port, parts.path.rstrip("/"))


def origins(config: Config) -> dict[str, Origin]:
    """Distinct upstream origins by cluster name, in config order."""
    names = _cluster_names(_base_urls(config))
    out: dict[str, Origin] = {}
    for provider in config.providers:
        o = origin(provider)
        out.setdefault(names[o.key], o)
    return out


def cluster_name(config: Config, provider: Provider) -> str:
    """The cluster `provider`'s requests go to: its own origin's, never another's."""
    return _cluster_names(_base_urls(config))[origin(provider).key]


def _base_urls(config: Config) -> tuple[str, ...]:
    return tuple(p.base_url for p in config.providers)


@functools.lru_cache(maxsize=16)
def _cluster_names(base_urls: tuple[str, ...]) -> dict[tuple[str, str, int], str]:
    """Each distinct origin's cluster name: its readable name where no other origin of the
    config reads the same, else that name and a digest of the exact origin, for all of them.

    Distinct by construction: readable names differ; a digested name ends in at least 8 hex
    digits, and a readable one in a port of at most 5; digests are widened until they differ.
    """
    by_readable: dict[str, dict[tuple[str, str, int], Origin]] = defaultdict(dict)
    for url in base_urls:
        o = _origin(url)
        by_readable[o.readable].setdefault(o.key, o)
    names: dict[tuple[str, str, int], str] = {}
    for readable, group in by_readable.items():
        names.update(dict.fromkeys(group, readable) if len(group) == 1 else _digested(group))
    return names


def _digested(group: dict[tuple[str, str, int], Origin]) -> dict[tuple[str, str, int], str]:
    """Origins that read alike, each named with the shortest digest prefix (8 hex digits at
    least) that tells them apart."""
    digests = {
        key: hashlib.sha256(f"{o.scheme}://{o.host}:{o.port}".encode()).hexdigest()
        for key, o in group.items()
    }
    width = next(w for w in range(8, 65) if len({d[:w] for d in digests.values()}) == len(group))
    return {key: f"{group[key].readable}_{d[:width]}" for key, d in digests.items()}


def upstream_path(provider: Provider, client_path: str) -> str:
    """The path on the provider for a client Messages path (query string kept for Anthropic)."""
    base = origin(provider).path_prefix
    if provider.interface == "anthropic":
        return base + client_path
    path = PATH_OVERRIDES.get((provider.kind, provider.interface))
    return base + (path or MESSAGES_PATH[provider.interface])


@dataclass(frozen=True)
class AuthChange:
    set: dict[str, str]
    remove: tuple[str, ...]


def auth_change(provider: Provider) -> AuthChange:
    """Credential headers for the upstream request; raises when a needed key is missing.

    The client's headers carry Anthropic credentials: they reach Anthropic only, and
    only when the provider entry has no key of its own.
    """
    if provider.access_key:
        return AuthChange(
            auth_headers(provider.interface, provider.access_key), CLIENT_AUTH_HEADERS
        )
    if provider.passes_client_auth:
        return AuthChange({}, ())
    if provider.needs_key:
        reason = (
            f"its access_key names ${provider.missing_key_var}, which is not set where the "
            "sidecar runs"
            if provider.missing_key_var
            else "it has no access_key in the gateway's config"
        )
        raise GatewayError(
            "authentication_error",
            f"The gateway routed this request to {provider.name}, but {reason}.",
        )
    return AuthChange({}, CLIENT_AUTH_HEADERS)
