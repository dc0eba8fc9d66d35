"""The client's request body written as JSON again (a rewritten `model`, a token estimate).

What the parser accepted can still fail to encode; that is the client's request at fault,
so it becomes an Anthropic-format 400 rather than a crash.
"""

from __future__ import annotations

from typing import Any

import orjson

from extproc.errors import GatewayError


def encode_request_json(value: Any) -> bytes:
    """A request (or part of one) as JSON again; what can't be encoded is the client's fault:
    orjson stops at 255 levels of nesting, where the parser accepted more."""
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, RecursionError) as exc:
        message = f"The request body can't be re-encoded as JSON ({exc}): nest it less deeply."
        raise GatewayError("invalid_request_error", message) from None
