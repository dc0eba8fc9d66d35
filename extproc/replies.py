"""Building ext_proc replies with the envoy-data-plane (betterproto2) types."""

from __future__ import annotations

from typing import Any

from envoy_data_plane.envoy.config.core.v3 import (
    HeaderValue,
    HeaderValueOption,
    HeaderValueOptionHeaderAppendAction,
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


def continue_request_headers() -> ProcessingResponse:
    return ProcessingResponse(request_headers=HeadersResponse(response=CommonResponse()))


def continue_response_headers() -> ProcessingResponse:
    return ProcessingResponse(response_headers=HeadersResponse(response=CommonResponse()))


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


def immediate(error: GatewayError, decision: dict[str, Any] | None = None) -> ProcessingResponse:
    """Answer the client directly with an Anthropic-format error."""
    return ProcessingResponse(
        immediate_response=ImmediateResponse(
            status=HttpStatus(code=StatusCode(error.status)),
            headers=header_mutation({"content-type": "application/json"}),
            body=error.body(),
            details=f"extproc_{error.error_type}",
        ),
        dynamic_metadata=metadata(decision or {"source": "rejected", "note": error.message[:200]}),
    )
