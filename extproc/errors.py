"""Errors the gateway answers itself, in Anthropic's error format.

Claude Code and the Anthropic SDKs parse `{"type": "error", "error": {...}}` and
act on `error.type` (retrying `overloaded_error` and `rate_limit_error`, showing
the message otherwise), so every local reply uses that shape.
"""

from __future__ import annotations

import orjson

STATUS_BY_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


class GatewayError(Exception):
    """A request the gateway answers itself instead of forwarding."""

    def __init__(self, error_type: str, message: str, status: int | None = None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status or STATUS_BY_TYPE[error_type]

    def body(self) -> bytes:
        return anthropic_error_body(self.error_type, self.message)


def anthropic_error_body(error_type: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})
