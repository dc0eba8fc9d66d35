"""Exchange cases the mutation run (docs/testing.md) found that no test held."""

from __future__ import annotations

import orjson
import pytest

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
