"""Which client paths the gateway serves, and how.

Messages paths are routed (the body is read, the model decided). Other paths go unread to
the `anthropic` provider, with its key, so only those on an allow-list may: any other
spelling of a path (`/V1/MESSAGES`, `/v1/messages;x`, `/v1/messages/batches`) would reach
Anthropic without routing, `max_tokens` caps or body limits. Envoy normalizes paths first
(`normalize_path`, `merge_slashes`), so `//v1/messages` and `/v1/./messages` are routed as
`/v1/messages`; a path still not in canonical form here is refused. The allow-list's grammar
and default are the configuration's (`extproc.config.pass_through`).
"""

from __future__ import annotations

from extproc.config.pass_through import is_canonical

MESSAGES_PATHS = ("/v1/messages", "/v1/messages/count_tokens")
"""Routed; a trailing slash is allowed."""


def is_messages(path: str) -> bool:
    """`path` (without its query) is one the gateway routes."""
    return path.rstrip("/") in MESSAGES_PATHS


def passes_through(path: str, allowed: tuple[str, ...]) -> bool:
    """`path` (without its query) goes unread to Anthropic: it is canonical and matches an
    entry of `allowed`, exactly, or by prefix when the entry ends in `*`."""
    if not is_canonical(path):
        return False
    return any(path == p or (p.endswith("*") and path.startswith(p[:-1])) for p in allowed)
