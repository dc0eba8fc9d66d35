"""What Python or a library says when an operation fails, read at test time.

Tests that pin a gateway message wrapping such an exception (`malformed answer from upstream:
...`) build the wrapped part with `error_text`, so the gateway's own words stay pinned exactly
while the interpreter's or orjson's wording may change between versions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def error_text(fn: Callable[[], Any]) -> str:
    """str() of the exception `fn` raises; fails the test when it raises none."""
    try:
        fn()
    except Exception as exc:
        return str(exc)
    raise AssertionError(f"{fn!r} raised nothing")
