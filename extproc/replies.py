"""Building ext_proc replies with the envoy-data-plane (betterproto2) types."""

from __future__ import annotations

from typing import Any

import orjson
from envoy_data_plane.envoy.config.core.v3 import (
    HeaderValue,
    HeaderValueOption,
    HeaderValueOptionHeaderAppendAction,
)
from envoy_data_plane.envoy.extensions.filters.http.ext_proc.v3 import (
    ProcessingMode,
    ProcessingModeBodySendMode,
    ProcessingModeHeaderSendMode,
)
from envoy_data_plane.envoy.service.ext_proc.v3 import (
    BodyMutation,
    BodyResponse,
    CommonResponse,
    HeaderMutation,
    HeadersResponse,
    ImmediateResponse,
    ProcessingResponse,
)
from envoy_data_plane.envoy.type.v3 import HttpStatus, StatusCode
from envoy_data_plane.google.protobuf import Struct

from extproc.errors import GatewayError

METADATA_NAMESPACE = "envoy.filters.http.ext_proc"

_OVERWRITE = HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD
_IF_ABSENT = HeaderValueOptionHeaderAppendAction.ADD_IF_ABSENT


def header_mutation(
    set_headers: dict[str, str] | None = None,
    remove: tuple[str, ...] | list[str] = (),
    add_if_absent: dict[str, str] | None = None,
) -> HeaderMutation:
    """Header values go as `raw_value`: Envoy ignores `value` in ext_proc replies."""
    options = [
        HeaderValueOption(header=HeaderValue(key=k, raw_value=v.encode()), append_action=action)
        for headers, action in ((set_headers, _OVERWRITE), (add_if_absent, _IF_ABSENT))
        for k, v in (headers or {}).items()
    ]
    return HeaderMutation(set_headers=options, remove_headers=list(remove))


def metadata(fields: dict[str, Any]) -> Struct:
    return Struct.from_dict({METADATA_NAMESPACE: fields})


# The filter's own mode (envoy_config.py) with the response phases skipped.
_NO_RESPONSE_PHASES = ProcessingMode(
    request_header_mode=ProcessingModeHeaderSendMode.SEND,
    response_header_mode=ProcessingModeHeaderSendMode.SKIP,
    request_body_mode=ProcessingModeBodySendMode.BUFFERED,
    response_body_mode=ProcessingModeBodySendMode.NONE,
    request_trailer_mode=ProcessingModeHeaderSendMode.SKIP,
    response_trailer_mode=ProcessingModeHeaderSendMode.SKIP,
)


def continue_request_headers(skip_response: bool = False) -> ProcessingResponse:
    """Go on to the body; with `skip_response`, Envoy won't send this answer's headers."""
    return ProcessingResponse(
        request_headers=HeadersResponse(response=CommonResponse()),
        mode_override=_NO_RESPONSE_PHASES if skip_response else None,
    )


def continue_response_headers() -> ProcessingResponse:
    return ProcessingResponse(response_headers=HeadersResponse(response=CommonResponse()))


def want_response_body(mutation: HeaderMutation, streamed: bool) -> ProcessingResponse:
    """Ask Envoy for the response body: chunk by chunk (SSE, or only reading it), or whole.

    `mode_override` is honoured only in replies to headers messages.
    """
    mode = ProcessingModeBodySendMode.STREAMED if streamed else ProcessingModeBodySendMode.BUFFERED
    return ProcessingResponse(
        response_headers=HeadersResponse(response=CommonResponse(header_mutation=mutation)),
        mode_override=ProcessingMode(response_body_mode=mode),
    )


def pass_response_body(usage: dict[str, int]) -> ProcessingResponse:
    """An answer chunk passed on as it came; with the last one, its token counts."""
    return ProcessingResponse(
        response_body=BodyResponse(response=CommonResponse()),
        dynamic_metadata=metadata(usage) if usage else None,
    )


def replace_response_body(body: bytes, usage: dict[str, int]) -> ProcessingResponse:
    """A translated body chunk; with the last one, the token counts for the access log."""
    return ProcessingResponse(
        response_body=BodyResponse(response=CommonResponse(body_mutation=BodyMutation(body=body))),
        dynamic_metadata=metadata(usage) if usage else None,
    )


def route_request_headers(mutation: HeaderMutation) -> ProcessingResponse:
    """Headers-phase reply that steers the route (for requests without a body to read)."""
    return ProcessingResponse(
        request_headers=HeadersResponse(
            response=CommonResponse(header_mutation=mutation, clear_route_cache=True)
        )
    )


def route_request_body(
    mutation: HeaderMutation, body: bytes | None, decision: dict[str, Any]
) -> ProcessingResponse:
    """Body-phase reply: headers, new body and route re-evaluation in one message.

    `clear_route_cache` only takes effect in a reply that also mutates headers.
    """
    return ProcessingResponse(
        request_body=BodyResponse(
            response=CommonResponse(
                header_mutation=mutation,
                body_mutation=BodyMutation(body=body) if body is not None else None,
                clear_route_cache=True,
            )
        ),
        dynamic_metadata=metadata(decision),
    )


def _respond(
    status: int, body: bytes, details: str, decision: dict[str, Any]
) -> ProcessingResponse:
    return ProcessingResponse(
        immediate_response=ImmediateResponse(
            status=HttpStatus(code=StatusCode(status)),
            headers=header_mutation({"content-type": "application/json"}),
            body=body,
            details=details,
        ),
        dynamic_metadata=metadata(decision),
    )


def immediate(error: GatewayError) -> ProcessingResponse:
    """Answer the client directly with an Anthropic-format error."""
    decision = {"source": "rejected", "note": error.message[:200]}
    return _respond(error.status, error.body(), f"extproc_{error.error_type}", decision)


def local_answer(payload: dict[str, Any], decision: dict[str, Any]) -> ProcessingResponse:
    """A 200 answered by the sidecar itself (count_tokens for providers without it)."""
    return _respond(200, orjson.dumps(payload), "extproc_local_answer", decision)
