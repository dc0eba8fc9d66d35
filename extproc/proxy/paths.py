"""Which client paths the gateway serves, and how.

Messages paths are routed (the body is read, the model decided). Other paths go unread to
the `anthropic` provider, with its key, so only those on an allow-list may: any other
spelling of a path (`/V1/MESSAGES`, `/v1/messages;x`, `/v1/messages/batches`) would reach
Anthropic without routing, `max_tokens` caps or body limits. Envoy normalizes paths first
(`normalize_path`, `merge_slashes`), so `//v1/messages` and `/v1/./messages` are routed as
`/v1/messages`; a path still not in canonical form here is refused.
"""

from __future__ import annotations

import re

MESSAGES_PATHS = ("/v1/messages", "/v1/messages/count_tokens")
"""Routed; a trailing slash is allowed."""

DEFAULT_PASS_THROUGH = ("/", "/v1/models", "/v1/models/*")
"""What Claude Code asks of its base URL besides Messages: `HEAD /` before its first request,
and the model list (`/v1/models`, `/v1/models/{id}`)."""

_CANONICAL = re.compile(r"/|(/[A-Za-z0-9_~:@+\-]+(\.[A-Za-z0-9_~:@+\-]+)*)+/?")
"""Segments of unreserved characters (dots only inside a name: no `.` or `..` segment), no
empty segment, no percent-escapes, no `;` parameters."""


def is_messages(path: str) -> bool:
    """`path` (without its query) is one the gateway routes."""
    return path.rstrip("/") in MESSAGES_PATHS


def passes_through(path: str, allowed: tuple[str, ...]) -> bool:
    """`path` (without its query) goes unread to Anthropic: it is canonical and matches an
    entry of `allowed`, exactly, or by prefix when the entry ends in `*`."""
    if not _CANONICAL.fullmatch(path):
        return False
    return any(path == p or (p.endswith("*") and path.startswith(p[:-1])) for p in allowed)


def pattern_problem(pattern: str) -> str | None:
    """What is wrong with a `pass_through_paths` entry, or None."""
    path = pattern.removesuffix("*")
    if "*" in path or not _CANONICAL.fullmatch(path):
        return (
            f"{pattern!r} is not a path such as /v1/models or a prefix such as /v1/models/* "
            "(no query, no . or .. segments, no escapes; * only at the end)"
        )
    return None
