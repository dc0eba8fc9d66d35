"""The hand-written ext_proc codec agrees with betterproto2, message for message."""

from __future__ import annotations

from envoy_data_plane.envoy.config.core.v3 import HeaderMap, HeaderValue
from envoy_data_plane.envoy.service.ext_proc.v3 import (
    HttpBody,
    HttpHeaders,
    ProcessingRequest,
    ProcessingResponse,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc import replies, wire
from extproc.errors import STATUS_BY_TYPE, GatewayError

names = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30)
values = st.text(max_size=60)
header_pairs = st.dictionaries(names.map(str.lower), values, max_size=25)
bodies = st.binary(max_size=3000)
metadata = st.dictionaries(
    names,
    st.one_of(st.none(), st.booleans(), values, st.floats(allow_nan=False), st.integers(-9, 99)),
    max_size=8,
)


def headers_request(pairs: dict[str, str], end: bool, phase: str) -> ProcessingRequest:
    values_ = [HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()]
    message = HttpHeaders(headers=HeaderMap(headers=values_), end_of_stream=end)
    return ProcessingRequest(**{phase: message})


@settings(max_examples=150, deadline=None)
@given(header_pairs, st.booleans(), st.sampled_from(["request_headers", "response_headers"]))
def test_decodes_headers_like_betterproto(pairs, end, phase):
    raw = bytes(headers_request(pairs, end, phase))
    assert wire.decode_request(raw) == ProcessingRequest.parse(raw)


@settings(max_examples=150, deadline=None)
@given(bodies, st.booleans(), st.sampled_from(["request_body", "response_body"]))
def test_decodes_bodies_like_betterproto(body, end, phase):
    raw = bytes(ProcessingRequest(**{phase: HttpBody(body=body, end_of_stream=end)}))
    assert wire.decode_request(raw) == ProcessingRequest.parse(raw)


def test_other_messages_fall_back_to_betterproto():
    raw = bytes(ProcessingRequest(observability_mode=True))
    assert wire.decode_request(raw) == ProcessingRequest.parse(raw)


def assert_same(reply: ProcessingResponse) -> None:
    encoded = wire.encode_response(reply)
    assert ProcessingResponse.parse(encoded) == ProcessingResponse.parse(bytes(reply))
    assert len(encoded) == len(bytes(reply))


@settings(max_examples=150, deadline=None)
@given(
    header_pairs, st.lists(names, max_size=4), header_pairs, st.one_of(st.none(), bodies), metadata
)
def test_encodes_routing_replies_like_betterproto(set_, remove, if_absent, body, decision):
    mutation = replies.header_mutation(set_, remove, if_absent)
    assert_same(replies.route_request_body(mutation, body, decision))
    assert_same(replies.route_request_headers(mutation))
    assert_same(replies.want_response_body(mutation, streamed=bool(body)))


@settings(max_examples=100, deadline=None)
@given(
    bodies,
    st.dictionaries(st.sampled_from(["input_tokens", "output_tokens"]), st.integers(0, 10**6)),
)
def test_encodes_body_replies_like_betterproto(body, usage):
    assert_same(replies.replace_response_body(body, usage))
    assert_same(replies.pass_response_body(usage))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(STATUS_BY_TYPE)), values)
def test_encodes_immediate_replies_like_betterproto(kind, message):
    assert_same(replies.immediate(GatewayError(kind, message)))
    assert_same(replies.local_answer({"input_tokens": 7}, {"source": "explicit"}))


def test_fixed_replies():
    for reply in (replies.continue_request_headers(), replies.continue_response_headers()):
        assert_same(reply)
    assert_same(replies.replace_response_body(b"", {}))
