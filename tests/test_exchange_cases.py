"""Exchange cases the mutation run (docs/testing.md) found that no test held."""

from __future__ import annotations

import orjson
import pytest
from envoy_data_plane.envoy.service.ext_proc.v3 import ProcessingResponse

from extproc.app import build_gateway
from extproc.config import parse
from extproc.errors import GatewayError
from extproc.exchange import Exchange, _parse_body, rewrite_model
from extproc.routing import RouterStage


def exchange_for(providers: str) -> Exchange:
    config = parse("llm_providers:\n" + providers)
    return Exchange(build_gateway(config, RouterStage(config.routing)))


def test_signed_thinking_blocks_are_kept():
    """Only thinking another provider wrote (no signature) is dropped; Anthropic's own,
    signed, must reach it again unchanged."""
    signed = {"type": "thinking", "thinking": "hmm", "signature": "EqQBCkYIBxgCKkD"}
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [signed, {"type": "text", "text": "a"}]},
        {"role": "user", "content": "and?"},
    ]
    raw = orjson.dumps({"model": "asked", "messages": messages})
    body, span = _parse_body(raw)
    rewritten = b"".join(rewrite_model(raw, body, "routed", span))
    assert rewritten == raw.replace(b'"asked"', b'"routed"')


def test_another_path_without_an_anthropic_provider_is_not_found():
    exchange = exchange_for("  - model: openai/gpt-4.1\n    access_key: k\n")
    with pytest.raises(GatewayError) as refused:
        exchange.on_request_headers({":path": "/v1/models?limit=5", ":method": "GET"}, True)
    error = refused.value
    assert (error.status, error.error_type) == (404, "not_found_error")
    assert error.message == "The gateway does not serve /v1/models."


def test_another_path_goes_to_the_anthropic_provider_with_its_key():
    """Model lists and telemetry go to the first `anthropic` entry, on its key: the headers
    reply names its cluster, sets its key and removes the client's credentials."""
    exchange = exchange_for(
        "  - model: openai/gpt-4.1\n    access_key: k\n"
        "  - model: anthropic/claude-x\n    access_key: sk-gw\n    base_url: http://10.0.0.7:8080\n"
    )
    reply = ProcessingResponse.parse(
        exchange.on_request_headers({":path": "/v1/models", ":method": "GET"}, True)
    )
    mutation = reply.request_headers.response.header_mutation
    assert {o.header.key: o.header.raw_value for o in mutation.set_headers} == {
        "x-extproc-cluster": b"10_0_0_7_8080",
        "x-api-key": b"sk-gw",
    }
    assert set(mutation.remove_headers) == {"x-api-key", "authorization"}
    assert reply.request_headers.response.clear_route_cache
