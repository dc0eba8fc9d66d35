"""The hand-written ext_proc codec against the envoy-data-plane types, byte for byte.

The types are the model of the protocol: each reply shape the sidecar writes is built here
with them too, and the two encodings must be the same bytes.
"""

from __future__ import annotations

from typing import Any

from envoy_data_plane.envoy.config.core.v3 import (
    HeaderMap,
    HeaderValue,
    HeaderValueOption,
    HeaderValueOptionHeaderAppendAction,
    Metadata,
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
    HttpBody,
    HttpHeaders,
    HttpTrailers,
    ImmediateResponse,
    ProcessingRequest,
    ProcessingResponse,
)
from envoy_data_plane.envoy.type.v3 import HttpStatus, StatusCode
from envoy_data_plane.google.protobuf import Struct
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.errors import STATUS_BY_TYPE, GatewayError
from extproc.proxy import replies, wire

names = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30)
values = st.text(max_size=300)
header_pairs = st.dictionaries(names.map(str.lower), values, max_size=25)
bodies = st.binary(max_size=3000)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), values, st.floats(allow_nan=False), st.integers(-9, 99)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=8,
)
metadata = st.dictionaries(names, json_values, max_size=8)

# ---------------------------------------------------------------- decoding


def headers_request(pairs: dict[str, str], end: bool, phase: str, raw: bool) -> ProcessingRequest:
    """Envoy sends values in raw_value; older ones (and other clients) in value."""
    values_ = [
        HeaderValue(key=k, raw_value=v.encode()) if raw else HeaderValue(key=k, value=v)
        for k, v in pairs.items()
    ]
    message = HttpHeaders(headers=HeaderMap(headers=values_), end_of_stream=end)
    return ProcessingRequest(**{phase: message})


@settings(deadline=None)
@given(
    header_pairs,
    st.booleans(),
    st.sampled_from(["request_headers", "response_headers"]),
    st.booleans(),
)
def test_decodes_headers(pairs, end, phase, raw):
    message = ProcessingRequest.parse(bytes(headers_request(pairs, end, phase, raw)))
    decoded = wire.decode_request(bytes(message))
    headers = getattr(message, phase)
    expected = {
        h.key.lower(): h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value
        for h in headers.headers.headers
    }
    assert decoded == wire.Phase(phase, headers=expected, end_of_stream=headers.end_of_stream)


@settings(deadline=None)
@given(bodies, st.booleans(), st.sampled_from(["request_body", "response_body"]))
def test_decodes_bodies(body, end, phase):
    raw = bytes(ProcessingRequest(**{phase: HttpBody(body=body, end_of_stream=end)}))
    assert wire.decode_request(raw) == wire.Phase(phase, body=body, end_of_stream=end)


def test_other_messages_have_no_phase():
    for message in (
        ProcessingRequest(observability_mode=True),
        ProcessingRequest(request_trailers=HttpTrailers()),
    ):
        assert wire.decode_request(bytes(message)) == wire.Phase("")


# ---------------------------------------------------------------- replies, built with the types

OVERWRITE = HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD
IF_ABSENT = HeaderValueOptionHeaderAppendAction.ADD_IF_ABSENT


def typed_mutation(
    set_: dict[str, str], remove: list[str], if_absent: dict[str, str] | None = None
) -> HeaderMutation:
    options = [
        HeaderValueOption(header=HeaderValue(key=k, raw_value=v.encode()), append_action=action)
        for headers, action in ((set_, OVERWRITE), (if_absent, IF_ABSENT))
        for k, v in (headers or {}).items()
    ]
    return HeaderMutation(set_headers=options, remove_headers=list(remove))


def typed_metadata(fields: dict[str, Any]) -> Struct:
    return Struct.from_dict({replies.METADATA_NAMESPACE: fields})


def assert_bytes(ours: bytes, typed: ProcessingResponse) -> None:
    assert ours == bytes(typed)
    assert ProcessingResponse.parse(ours) == typed


@settings(deadline=None)
@given(
    header_pairs, st.lists(names, max_size=4), header_pairs, st.one_of(st.none(), bodies), metadata
)
def test_routing_replies(set_, remove, if_absent, body, decision):
    mutation = typed_mutation(set_, remove, if_absent)
    ours = replies.header_mutation(set_, remove, if_absent)
    assert ours == bytes(mutation)
    common = CommonResponse(
        header_mutation=mutation,
        body_mutation=BodyMutation(body=body) if body is not None else None,
        clear_route_cache=True,
    )
    assert_bytes(
        replies.route_request_body(ours, [body] if body is not None else None, decision),
        ProcessingResponse(
            request_body=BodyResponse(response=common), dynamic_metadata=typed_metadata(decision)
        ),
    )
    assert_bytes(
        replies.route_request_headers(ours, decision),
        ProcessingResponse(
            request_headers=HeadersResponse(
                response=CommonResponse(header_mutation=mutation, clear_route_cache=True)
            ),
            dynamic_metadata=typed_metadata(decision),
            mode_override=headers_phase_mode(
                ProcessingModeHeaderSendMode.SKIP, ProcessingModeBodySendMode.NONE
            ),
        ),
    )
    streamed = bool(body)
    mode = ProcessingModeBodySendMode.STREAMED if streamed else ProcessingModeBodySendMode.BUFFERED
    assert_bytes(
        replies.want_response_body(ours, streamed=streamed),
        ProcessingResponse(
            response_headers=HeadersResponse(response=CommonResponse(header_mutation=mutation)),
            mode_override=ProcessingMode(response_body_mode=mode),
        ),
    )


@settings(deadline=None)
@given(
    bodies,
    st.dictionaries(st.sampled_from(["input_tokens", "output_tokens"]), st.integers(0, 10**6)),
)
def test_response_body_replies(body, usage):
    usage_metadata = typed_metadata(usage) if usage else None
    assert_bytes(
        replies.replace_response_body(body, usage),
        ProcessingResponse(
            response_body=BodyResponse(
                response=CommonResponse(body_mutation=BodyMutation(body=body))
            ),
            dynamic_metadata=usage_metadata,
        ),
    )
    assert_bytes(
        replies.pass_response_body(usage),
        ProcessingResponse(
            response_body=BodyResponse(response=CommonResponse()),
            dynamic_metadata=usage_metadata,
        ),
    )


def typed_immediate(status: int, body: bytes, details: str, decision: dict) -> ProcessingResponse:
    return ProcessingResponse(
        immediate_response=ImmediateResponse(
            status=HttpStatus(code=StatusCode(status)),
            headers=typed_mutation({"content-type": "application/json"}, []),
            body=body,
            details=details,
        ),
        dynamic_metadata=typed_metadata(decision),
    )


@settings(deadline=None)
@given(st.sampled_from(sorted(STATUS_BY_TYPE)), values)
def test_immediate_replies(kind, message):
    error = GatewayError(kind, message)
    assert_bytes(
        replies.immediate(error),
        typed_immediate(
            error.status,
            error.body(),
            f"extproc_{kind}",
            {"source": "rejected", "note": message[:200]},
        ),
    )


def test_immediate_reply_after_a_decision_keeps_it():
    decided = {"source": "router", "route": "code", "routed_model": "openai/x", "note": ""}
    error = GatewayError("authentication_error", "its access_key names $K, which is not set")
    assert_bytes(
        replies.immediate(error, decided=decided),
        typed_immediate(
            401, error.body(), "extproc_authentication_error", {**decided, "note": error.message}
        ),
    )


def test_local_answer():
    assert_bytes(
        replies.local_answer({"input_tokens": 7}, {"source": "explicit"}),
        typed_immediate(200, b'{"input_tokens":7}', "extproc_local_answer", {"source": "explicit"}),
    )


def headers_phase_mode(
    response_header_mode: ProcessingModeHeaderSendMode,
    request_body_mode: ProcessingModeBodySendMode = ProcessingModeBodySendMode.BUFFERED,
) -> ProcessingMode:
    """The mode a reply to the request's headers sets: the body buffered (or, for a request
    routed by its headers, not sent), no trailers, the answer's headers sent or skipped."""
    skip = ProcessingModeHeaderSendMode.SKIP
    return ProcessingMode(
        request_header_mode=ProcessingModeHeaderSendMode.SEND,
        response_header_mode=response_header_mode,
        request_body_mode=request_body_mode,
        response_body_mode=ProcessingModeBodySendMode.NONE,
        request_trailer_mode=skip,
        response_trailer_mode=skip,
    )


def test_header_phase_replies():
    send, skip = ProcessingModeHeaderSendMode.SEND, ProcessingModeHeaderSendMode.SKIP
    for skip_response, response_header_mode in ((False, send), (True, skip)):
        assert_bytes(
            replies.continue_request_headers(skip_response=skip_response),
            ProcessingResponse(
                request_headers=HeadersResponse(response=CommonResponse()),
                mode_override=headers_phase_mode(response_header_mode),
            ),
        )
    assert_bytes(
        replies.continue_request_body(),
        ProcessingResponse(request_body=BodyResponse(response=CommonResponse())),
    )
    assert_bytes(
        replies.continue_response_headers(),
        ProcessingResponse(response_headers=HeadersResponse(response=CommonResponse())),
    )
    assert_bytes(
        replies.continue_response_headers(replies.header_mutation(None, ["x-a"])),
        ProcessingResponse(
            response_headers=HeadersResponse(
                response=CommonResponse(header_mutation=typed_mutation({}, ["x-a"]))
            )
        ),
    )


def test_a_large_body_is_framed_right():
    """Lengths over one varint byte at every nesting level; a body in pieces, joined once."""
    body = bytes(range(256)) * 20_000
    decision = {"source": "sticky", "router_ms": 0.04}
    assert_bytes(
        replies.route_request_body(
            replies.header_mutation({"a": "b"}), [body[:1000], memoryview(body)[1000:]], decision
        ),
        ProcessingResponse(
            request_body=BodyResponse(
                response=CommonResponse(
                    header_mutation=typed_mutation({"a": "b"}, []),
                    body_mutation=BodyMutation(body=body),
                    clear_route_cache=True,
                )
            ),
            dynamic_metadata=typed_metadata(decision),
        ),
    )


def test_a_translated_body_goes_in_the_metadata_as_a_string():
    """A translated chain head's body travels in the decision's metadata (its Lua filter puts
    it in place): encoded once, as UTF-8, it reads back as the string it is."""
    body = "日本語 ✓ {}".encode() * 1000
    decided = {"chain": "p__a,fo__b", "head_body": body}
    assert_bytes(
        replies.route_request_body(replies.header_mutation({"a": "b"}), None, decided),
        ProcessingResponse(
            request_body=BodyResponse(
                response=CommonResponse(
                    header_mutation=typed_mutation({"a": "b"}, []), clear_route_cache=True
                )
            ),
            dynamic_metadata=typed_metadata({**decided, "head_body": body.decode()}),
        ),
    )


@settings(deadline=None)
@given(header_pairs, st.one_of(st.none(), bodies), metadata, st.sampled_from([None, True, False]))
def test_failover_attempt_replies(set_, body, fields, read_body):
    """The replies of a failover attempt (extproc/proxy/attempt.py): its body without a route
    to clear, its answer's headers with metadata for the next attempts, a held whole answer."""
    mutation = typed_mutation(set_, [], {})
    ours = replies.header_mutation(set_)
    namespace = replies.METADATA_NAMESPACE
    assert_bytes(
        replies.route_request_body(
            ours, [body] if body is not None else None, fields, clear_route_cache=False
        ),
        ProcessingResponse(
            request_body=BodyResponse(
                response=CommonResponse(
                    header_mutation=mutation,
                    body_mutation=BodyMutation(body=body) if body is not None else None,
                )
            ),
            dynamic_metadata=typed_metadata(fields),
        ),
    )
    modes = {True: ProcessingModeBodySendMode.STREAMED, False: ProcessingModeBodySendMode.BUFFERED}
    assert_bytes(
        replies.attempt_response_headers(ours, fields, namespace, read_body),
        ProcessingResponse(
            response_headers=HeadersResponse(response=CommonResponse(header_mutation=mutation)),
            dynamic_metadata=typed_metadata(fields) if fields else None,
            mode_override=ProcessingMode(response_body_mode=modes[read_body])
            if read_body is not None
            else None,
        ),
    )
    assert_bytes(
        replies.held_response_body(ours, body, fields, namespace),
        ProcessingResponse(
            response_body=BodyResponse(
                response=CommonResponse(
                    header_mutation=mutation,
                    body_mutation=BodyMutation(body=body) if body is not None else None,
                )
            ),
            dynamic_metadata=typed_metadata(fields) if fields else None,
        ),
    )


@settings(deadline=None)
@given(st.dictionaries(names, values, max_size=5), st.dictionaries(names, values, max_size=5))
def test_decodes_a_failover_attempts_attributes_and_metadata(attributes, decided):
    """What an upstream filter sends: the attempt's cluster (attributes) and the decision
    (metadata), their string values; any other value is left out."""
    request = ProcessingRequest(
        request_headers=HttpHeaders(end_of_stream=False),
        attributes={"envoy.filters.http.ext_proc": Struct.from_dict({**attributes, "n": 1})},
        metadata_context=Metadata(filter_metadata={"ns": Struct.from_dict(decided)}),
    )
    phase = wire.decode_request(bytes(request))
    assert phase.name == "request_headers"
    assert phase.attributes == {k: v for k, v in attributes.items() if k != "n"}
    assert phase.metadata == {"ns": decided}
