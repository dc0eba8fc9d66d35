"""Upstream errors (any shape, any status) → Anthropic error bodies and `event: error`.

Claude Code and the Anthropic SDKs decide what to do from the HTTP status (retry on 429 and
5xx) and show `error.message`; `error.type` must be one the SDK knows for that status.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from extproc.translate.sse import encode_event

_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# OpenAI-style `error.type` / `error.code` strings, and Google-style `error.status`.
_NAMED_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "invalid_argument": "invalid_request_error",
    "context_length_exceeded": "invalid_request_error",
    "invalid_prompt": "invalid_request_error",
    "authentication_error": "authentication_error",
    "invalid_api_key": "authentication_error",
    "unauthenticated": "authentication_error",
    "permission_error": "permission_error",
    "permission_denied": "permission_error",
    "not_found_error": "not_found_error",
    "model_not_found": "not_found_error",
    "not_found": "not_found_error",
    "rate_limit_error": "rate_limit_error",
    "rate_limit_exceeded": "rate_limit_error",
    "insufficient_quota": "rate_limit_error",
    "resource_exhausted": "rate_limit_error",
    "tokens": "rate_limit_error",
    "server_error": "api_error",
    "internal": "api_error",
    "overloaded_error": "overloaded_error",
    "overloaded": "overloaded_error",
    "service_unavailable": "overloaded_error",
    "unavailable": "overloaded_error",
    "timeout": "timeout_error",
    "deadline_exceeded": "timeout_error",
}

_MAX_MESSAGE = 2000
_TAGS = re.compile(rb"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.DOTALL | re.IGNORECASE)


def type_for_status(status: int) -> str:
    """The Anthropic error type an SDK expects with this HTTP status."""
    if status in _STATUS_TYPES:
        return _STATUS_TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def status_for_type(error_type: str) -> int:
    """The HTTP status that goes with an Anthropic error type (for errors that came without
    one, such as a failed Responses answer), so the SDK's retry logic sees 429 and 5xx."""
    if error_type == "overloaded_error":
        return 529
    return next((s for s, t in _STATUS_TYPES.items() if t == error_type), 500)


def error_object(body: Any) -> dict[str, Any] | None:
    """The error object of an OpenAI-style (`{"error": {...}}`) or Google-style list body."""
    if isinstance(body, list) and body:
        body = body[0]
    if not isinstance(body, dict) or "error" not in body:
        return None
    err = body["error"]
    return err if isinstance(err, dict) else {"message": str(err)}


def status_of(err: dict[str, Any], default: int) -> int:
    """The HTTP status an error object names (OpenRouter and Google put it in `code`)."""
    code = err.get("code")
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    return code if isinstance(code, int) and 400 <= code <= 599 else default


def type_of(err: dict[str, Any], status: int) -> str:
    """Anthropic type for a mid-stream or 200-status error object, where no HTTP status helps."""
    for key in ("type", "code", "status"):
        name = err.get(key)
        if isinstance(name, str) and name.lower() in _NAMED_TYPES:
            return _NAMED_TYPES[name.lower()]
    return type_for_status(status_of(err, status))


def message_of(err: dict[str, Any]) -> str:
    """A human-readable message from an error object."""
    msg = err.get("message")
    if isinstance(msg, str) and msg:
        return msg[:_MAX_MESSAGE]
    return orjson.dumps(err).decode()[:_MAX_MESSAGE]


def upstream_message(status: int, body: bytes) -> str:
    """Best message from any error body: JSON error object, plain text, HTML, or nothing."""
    try:
        err = error_object(orjson.loads(body))
    except orjson.JSONDecodeError:
        err = None
    if err is not None:
        return message_of(err)
    text = b" ".join(_TAGS.sub(b" ", body).split()).decode("utf-8", "replace")
    if not text:
        return f"upstream answered HTTP {status} with no body"
    return f"upstream answered HTTP {status}: {text[:_MAX_MESSAGE]}"


def error_payload(error_type: str, message: str) -> dict[str, Any]:
    """The Anthropic error envelope."""
    return {"type": "error", "error": {"type": error_type, "message": message}}


def error_body(error_type: str, message: str) -> bytes:
    """Anthropic error JSON for a non-streamed answer."""
    return orjson.dumps(error_payload(error_type, message))


def error_event(error_type: str, message: str) -> bytes:
    """Anthropic `event: error` for a streamed answer."""
    return encode_event("error", error_payload(error_type, message))


def stopped_reading(reason: Exception) -> str:
    """The message for an answer the gateway stopped reading: it would hold too much."""
    return f"The gateway stopped reading the provider's answer: {reason}."


def http_error(status: int, body: bytes) -> tuple[int, str, str]:
    """(status for the client, Anthropic type, message) for a non-2xx upstream answer.

    Statuses below 400 can't be errors a client understands: they become 502.
    """
    client_status = status if 400 <= status <= 599 else 502
    return client_status, type_for_status(client_status), upstream_message(status, body)


class UnusableAnswer(Exception):
    """A non-streamed upstream answer that reaches the client as an error instead."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.reply = (status, error_body(error_type, message))
        """(status for the client, Anthropic error body)."""


def answer_json(status: int, body: bytes) -> Any:
    """A 2xx answer, parsed; raises UnusableAnswer for another status or a body not JSON.
    Both translators read their non-streamed answers through it."""
    if not 200 <= status < 300:
        raise UnusableAnswer(*http_error(status, body))
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        message = f"invalid JSON from upstream: {upstream_message(status, body)}"
        raise UnusableAnswer(502, "api_error", message) from None
