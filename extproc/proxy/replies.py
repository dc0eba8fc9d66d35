"""The ext_proc replies the sidecar sends, written as ProcessingResponse bytes.

Each function writes one reply shape with `wire`'s primitives; tests/unit/proxy/test_wire.py
checks every shape byte for byte against the same reply built with the envoy-data-plane types. Field
numbers are envoy.service.ext_proc.v3's, and so are the enum values below: written out, not read
from envoy-data-plane, whose module for envoy.config.core.v3 alone takes half a second of CPU to
import, at every start of `extproc up`, `serve` and `render-envoy` (test_wire pins each value
to envoy-data-plane's).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import orjson

from extproc.errors import GatewayError
from extproc.proxy.wire import data, integer, message, proto_struct, tag, text

METADATA_NAMESPACE = "envoy.filters.http.ext_proc"
"""The default of sidecar.metadata_namespace."""

# ProcessingResponse fields
_REQUEST_HEADERS, _RESPONSE_HEADERS, _REQUEST_BODY, _RESPONSE_BODY = 1, 2, 3, 4
_IMMEDIATE, _DYNAMIC_METADATA, _MODE_OVERRIDE = 7, 8, 9

# HeaderValueOption.HeaderAppendAction (envoy.config.core.v3)
_IF_ABSENT, _OVERWRITE = 1, 2  # ADD_IF_ABSENT, OVERWRITE_IF_EXISTS_OR_ADD
# ProcessingMode.HeaderSendMode and .BodySendMode (envoy.extensions.filters.http.ext_proc.v3)
_SEND, _SKIP = 1, 2
_NONE, _STREAMED, _BUFFERED = 0, 1, 2


def header_mutation(
    set_headers: dict[str, str] | None = None,
    remove: tuple[str, ...] | list[str] = (),
    add_if_absent: dict[str, str] | None = None,
) -> bytes:
    """A HeaderMutation. Values go as `raw_value`: Envoy ignores `value` in ext_proc replies."""
    options = [
        (_known_option if len(value) <= _KNOWN_VALUE_MAX else _header_option)(key, value, action)
        for headers, action in ((set_headers, _OVERWRITE), (add_if_absent, _IF_ABSENT))
        for key, value in (headers or {}).items()
    ]
    return b"".join(options) + b"".join(message(2, name.encode()) for name in remove)


def _header_option(key: str, value: str, action: int) -> bytes:
    """HeaderValueOption{header=1: HeaderValue{key=1, raw_value=3}, append_action=3}."""
    return message(1, message(1, text(1, key) + data(3, value.encode())) + integer(3, action))


_KNOWN_VALUE_MAX = 256
_known_option = functools.lru_cache(maxsize=1024)(_header_option)
"""A provider's route headers are the same on every request, so they are encoded once. Long
values (a client's path with its query string) are not kept: the cache stays small."""


def metadata(fields: dict[str, Any], namespace: str = METADATA_NAMESPACE) -> bytes:
    """The dynamic_metadata field: `fields` under `namespace`, for the access log."""
    return message(_DYNAMIC_METADATA, proto_struct({namespace: fields}))


def _common(mutation: bytes | None = None, clear_route_cache: bool = False) -> bytes:
    """A CommonResponse{header_mutation=2, clear_route_cache=5}, without a body mutation."""
    headers = message(2, mutation) if mutation is not None else b""
    return headers + integer(5, clear_route_cache)


def _phase(number: int, common: bytes) -> bytes:
    """HeadersResponse or BodyResponse{response=1: CommonResponse} as field `number`."""
    return message(number, message(1, common))


def _mode(*modes: int) -> bytes:
    """A ProcessingMode, its six modes in field order."""
    return message(_MODE_OVERRIDE, b"".join(integer(i, m) for i, m in enumerate(modes, start=1)))


# The filter's own mode (control/envoy_config.py) skips the answer's headers: Envoy's replies to
# requests the sidecar never saw (malformed HTTP) must not wait on it. A routed request
# asks for them here when the sidecar will read the answer.
_RESPONSE_HEADERS_TOO = _mode(_SEND, _SEND, _BUFFERED, _NONE, _SKIP, _SKIP)
_NO_RESPONSE_PHASES = _mode(_SEND, _SKIP, _BUFFERED, _NONE, _SKIP, _SKIP)
# Nothing more to see: neither the request body nor any response phase.
_NOTHING_MORE = _mode(_SEND, _SKIP, _NONE, _NONE, _SKIP, _SKIP)


def continue_request_headers(skip_response: bool = False) -> bytes:
    """Go on to the body; with `skip_response`, Envoy won't send this answer's headers."""
    modes = _NO_RESPONSE_PHASES if skip_response else _RESPONSE_HEADERS_TOO
    return _phase(_REQUEST_HEADERS, b"") + modes


def continue_response_headers(mutation: bytes | None = None) -> bytes:
    """The answer goes on as it came, or with `mutation`; its body is not asked for."""
    return _phase(_RESPONSE_HEADERS, _common(mutation))


def want_response_body(mutation: bytes, streamed: bool) -> bytes:
    """Ask Envoy for the response body: chunk by chunk (SSE, or only reading it), or whole.

    `mode_override` is honoured only in replies to headers messages.
    """
    mode = _STREAMED if streamed else _BUFFERED
    return _phase(_RESPONSE_HEADERS, _common(mutation)) + _mode(0, 0, 0, mode, 0, 0)


def route_request_headers(mutation: bytes, decision: dict[str, Any]) -> bytes:
    """Headers-phase reply that steers the route of a request whose body the sidecar does
    not read (paths other than Messages): Envoy sends it on without showing it to us."""
    reply = _phase(_REQUEST_HEADERS, _common(mutation, clear_route_cache=True))
    return reply + metadata(decision) + _NOTHING_MORE


def continue_request_body() -> bytes:
    """The body passed on as it came."""
    return _phase(_REQUEST_BODY, b"")


Body = Sequence[bytes | memoryview]
"""A body as pieces (a splice: head, new value, a view of the rest), joined once, in the reply."""


def _body_phase(
    number: int,
    mutation: bytes | None,
    body: Body,
    clear_route_cache: bool,
) -> bytes:
    """A reply that replaces the body, copying the (possibly megabytes of) body once: a
    BodyResponse.

    CommonResponse{status=1, header_mutation=2, body_mutation=3: BodyMutation{body=1},
    clear_route_cache=5}
    """
    size = sum(map(len, body))
    front = message(2, mutation) if mutation is not None else b""
    body_field = tag(1, size)
    body_mutation = tag(3, len(body_field) + size)
    tail = integer(5, clear_route_cache)
    common_size = len(front) + len(body_mutation) + len(body_field) + size + len(tail)
    common = tag(1, common_size)
    head = tag(number, len(common) + common_size) + common + front + body_mutation + body_field
    return b"".join((head, *body, tail))


def route_request_body(
    mutation: bytes,
    body: Body | None,
    decision: dict[str, Any],
    namespace: str = METADATA_NAMESPACE,
    clear_route_cache: bool = True,
) -> bytes:
    """Body-phase reply: headers, new body and route re-evaluation in one message.

    `clear_route_cache` only takes effect in a reply that also mutates headers; a failover
    attempt's (an upstream filter's) reply has no route to clear.
    """
    if body is None:
        reply = _phase(_REQUEST_BODY, _common(mutation, clear_route_cache))
    else:
        reply = _body_phase(_REQUEST_BODY, mutation, body, clear_route_cache)
    return reply + metadata(decision, namespace)


def attempt_response_headers(
    mutation: bytes | None,
    fields: dict[str, Any],
    namespace: str,
    read_body: bool | None = None,
) -> bytes:
    """A failover attempt's reply to its answer's headers: with `fields` for the next
    attempts (dynamic metadata), and, unless `read_body` is None, asking for the body:
    chunk by chunk (True) or whole, the headers held until it is read (False)."""
    reply = _phase(_RESPONSE_HEADERS, _common(mutation))
    if fields:
        reply += metadata(fields, namespace)
    if read_body is not None:
        reply += _mode(0, 0, 0, _STREAMED if read_body else _BUFFERED, 0, 0)
    return reply


def held_response_body(
    mutation: bytes, body: bytes | None, fields: dict[str, Any], namespace: str
) -> bytes:
    """A whole answer read while its headers were held: their changes (the failover mark),
    the body (translated) or None (as it came), and `fields` for the next attempts."""
    if body is None:
        reply = _phase(_RESPONSE_BODY, _common(mutation))
    else:
        reply = _body_phase(_RESPONSE_BODY, mutation, (body,), clear_route_cache=False)
    return reply + (metadata(fields, namespace) if fields else b"")


def pass_response_body(usage: dict[str, int], namespace: str = METADATA_NAMESPACE) -> bytes:
    """An answer chunk passed on as it came; with the last one, its token counts."""
    return _phase(_RESPONSE_BODY, b"") + (metadata(usage, namespace) if usage else b"")


def replace_response_body(
    body: bytes, usage: dict[str, int], namespace: str = METADATA_NAMESPACE
) -> bytes:
    """A translated body chunk; with the last one, the token counts for the access log."""
    reply = _body_phase(_RESPONSE_BODY, None, (body,), clear_route_cache=False)
    return reply + (metadata(usage, namespace) if usage else b"")


def _respond(
    status: int, body: bytes, details: str, decision: dict[str, Any], namespace: str
) -> bytes:
    """ImmediateResponse{status=1: HttpStatus{code=1}, headers=2, body=3, details=5}."""
    immediate = (
        message(1, integer(1, status))
        + message(2, header_mutation({"content-type": "application/json"}))
        + data(3, body)
        + text(5, details)
    )
    return message(_IMMEDIATE, immediate) + metadata(decision, namespace)


def immediate(
    error: GatewayError,
    namespace: str = METADATA_NAMESPACE,
    decided: dict[str, Any] | None = None,
) -> bytes:
    """Answer the client directly with an Anthropic-format error.

    A request refused after its decision (say, its provider's key is unset) keeps that
    decision in the access log; one refused before any decision is `rejected`.
    """
    decision = {**(decided or {"source": "rejected"}), "note": error.message[:200]}
    details = f"extproc_{error.error_type}"
    return _respond(error.status, error.body(), details, decision, namespace)


def answer_instead(
    status: int, body: bytes, usage: dict[str, int], namespace: str = METADATA_NAMESPACE
) -> bytes:
    """The upstream's whole answer replaced by `body` with another status (errors that a
    provider sent with a 2xx status), so clients see the status and SDKs retry a 429."""
    return _respond(status, body, "extproc_translated_error", usage, namespace)


def local_answer(
    payload: dict[str, Any], decision: dict[str, Any], namespace: str = METADATA_NAMESPACE
) -> bytes:
    """A 200 answered by the sidecar itself (count_tokens for providers without it)."""
    return _respond(200, orjson.dumps(payload), "extproc_local_answer", decision, namespace)
