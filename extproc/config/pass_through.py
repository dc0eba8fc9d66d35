"""What a `pass_through_paths` entry may be, and the default list.

The grammar is the configuration's: config.yaml's entries are checked against it, and
`extproc.proxy.paths` matches each client path with it (why only canonical paths may pass
is told there).
"""

from __future__ import annotations

import re

DEFAULT_PASS_THROUGH = ("/", "/v1/models", "/v1/models/*")
"""What Claude Code asks of its base URL besides Messages: `HEAD /` before its first request,
and the model list (`/v1/models`, `/v1/models/{id}`)."""

_CANONICAL = re.compile(r"/|(/[A-Za-z0-9_~:@+\-]+(\.[A-Za-z0-9_~:@+\-]+)*)+/?")
"""Segments of unreserved characters (dots only inside a name: no `.` or `..` segment), no
empty segment, no percent-escapes, no `;` parameters."""


def is_canonical(path: str) -> bool:
    """`path` (without its query) is in the one spelling the gateway serves."""
    return _CANONICAL.fullmatch(path) is not None


def pattern_problem(pattern: str) -> str | None:
    """What is wrong with a `pass_through_paths` entry, or None."""
    path = pattern.removesuffix("*")
    if "*" in path or not is_canonical(path):
        return (
            f"{pattern!r} is not a path such as /v1/models or a prefix such as /v1/models/* "
            "(no query, no . or .. segments, no escapes; * only at the end)"
        )
    return None
