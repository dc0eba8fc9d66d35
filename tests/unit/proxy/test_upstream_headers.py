"""What the sidecar tells Envoy to send upstream: credentials only where config says, no
Anthropic headers on translated requests, a gateway key matched exactly, and upstream errors
counted by provider and status.

Each test was checked by making its bug by hand in the product code (docs/testing.md).
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
from envoy_data_plane.envoy.config.core.v3 import HeaderValueOptionHeaderAppendAction
from envoy_data_plane.envoy.service.ext_proc.v3 import CommonResponse, ProcessingResponse

from extproc.app import build_runtime
from extproc.config import parse
from extproc.decisions.routing import RouterStage
from extproc.errors import GatewayError
from extproc.proxy.exchange import Exchange, _check_gateway_key

CLIENT_CREDENTIALS = {"x-api-key": "sk-ant-client-1", "authorization": "Bearer sk-ant-client-2"}
BODY = orjson.dumps(
    {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
)


def exchange_for(provider_yaml: str) -> Exchange:
    config = parse("llm_providers:\n" + provider_yaml)
    return Exchange(build_runtime(config, RouterStage(config.routing)))


def body_reply(exchange: Exchange, path: str = "/v1/messages") -> CommonResponse:
    """The sidecar's reply to a Messages request that carries the client's credentials."""
    headers = {":path": path, ":method": "POST", "content-type": "application/json"}
    exchange.on_request_headers({**headers, **CLIENT_CREDENTIALS}, False)
    reply = ProcessingResponse.parse(asyncio.run(exchange.on_request_body(BODY)))
    return reply.request_body.response


def upstream_changes(reply: CommonResponse) -> tuple[dict[str, str], dict[str, str], set[str]]:
    """(headers set, headers added only if absent, headers removed)."""
    set_, if_absent = {}, {}
    for option in reply.header_mutation.set_headers:
        added = option.append_action == HeaderValueOptionHeaderAppendAction.ADD_IF_ABSENT
        (if_absent if added else set_)[option.header.key] = option.header.raw_value.decode()
    return set_, if_absent, set(reply.header_mutation.remove_headers)


@pytest.mark.parametrize(
    ("provider", "credentials_set", "credentials_removed"),
    [
        ("  - model: ollama/llama3.2\n    base_url: http://127.0.0.1:9\n", {}, True),
        ("  - model: anthropic/claude-x\n    base_url: http://127.0.0.1:9\n", {}, False),
        (
            "  - model: anthropic/claude-x\n    access_key: sk-gw\n",
            {"x-api-key": "sk-gw"},
            True,
        ),
        (
            "  - model: openai/gpt-4.1\n    access_key: sk-gw\n",
            {"authorization": "Bearer sk-gw"},
            True,
        ),
    ],
    ids=["ollama: no key", "anthropic: client's own", "anthropic: gateway's", "openai"],
)
def test_client_credentials_reach_only_an_anthropic_entry_without_a_key(
    provider, credentials_set, credentials_removed
):
    set_, _, removed = upstream_changes(body_reply(exchange_for(provider)))
    assert {k: v for k, v in set_.items() if k in CLIENT_CREDENTIALS} == credentials_set
    assert removed & set(CLIENT_CREDENTIALS) == (
        set(CLIENT_CREDENTIALS) if credentials_removed else set()
    )


@pytest.mark.parametrize(
    "provider",
    [
        "  - model: acme/m\n    base_url: http://127.0.0.1:9\n    provider_interface: anthropic\n",
        "  - model: openai/gpt-4.1\n    base_url: http://127.0.0.1:9\n",
    ],
    ids=["custom provider", "openai at a custom base_url"],
)
def test_a_provider_that_needs_a_key_and_has_none_refuses_instead_of_forwarding(provider):
    with pytest.raises(GatewayError) as refused:
        body_reply(exchange_for(provider))
    assert refused.value.error_type == "authentication_error"
    assert refused.value.message.endswith("it has no access_key in the gateway's config.")


def test_a_missing_key_variable_is_named_in_the_refusal(monkeypatch):
    monkeypatch.delenv("EXTPROC_TEST_UNSET_KEY", raising=False)
    exchange = exchange_for("  - model: openai/gpt-4.1\n    access_key: $EXTPROC_TEST_UNSET_KEY\n")
    with pytest.raises(GatewayError) as refused:
        body_reply(exchange)
    assert refused.value.message == (
        "The gateway routed this request to openai/gpt-4.1, but its access_key names "
        "$EXTPROC_TEST_UNSET_KEY, which is not set where the sidecar runs."
    )


@pytest.mark.parametrize(
    ("provider", "client_path", "upstream"),
    [
        (
            "  - model: anthropic/claude-x\n    base_url: http://127.0.0.1:9/proxy/\n",
            "/v1/messages?beta=true",
            "/proxy/v1/messages?beta=true",
        ),
        (
            "  - model: openai/gpt-4.1\n    access_key: k\n    provider_interface: openai-chat\n",
            "/v1/messages?beta=true",
            "/v1/chat/completions",
        ),
        (
            "  - model: ollama/llama3.2\n    base_url: http://127.0.0.1:11434\n",
            "/v1/messages",
            "/v1/chat/completions",
        ),
        (
            "  - model: acme/m\n    base_url: http://127.0.0.1:9/api\n"
            "    provider_interface: openai-responses\n    access_key: k\n",
            "/v1/messages",
            "/api/responses",
        ),
    ],
    ids=["anthropic: client's path and query", "openai chat", "ollama", "responses under a prefix"],
)
def test_the_upstream_path_is_the_providers(provider, client_path, upstream):
    set_, _, _ = upstream_changes(body_reply(exchange_for(provider), client_path))
    assert (set_[":path"], set_["x-envoy-original-path"]) == (upstream, client_path)


@pytest.mark.parametrize(
    ("provider", "version_if_absent", "removed"),
    [
        (
            "  - model: anthropic/claude-x\n    access_key: k\n",
            {"anthropic-version": "2023-06-01"},
            set(),
        ),
        (
            "  - model: openai/gpt-4.1\n    access_key: k\n",
            {},
            {"anthropic-version", "anthropic-beta"},
        ),
        (
            "  - model: ollama/llama3.2\n    base_url: http://127.0.0.1:9\n",
            {},
            {"anthropic-version", "anthropic-beta"},
        ),
    ],
    ids=["anthropic", "openai", "ollama"],
)
def test_a_translated_request_carries_no_anthropic_headers(provider, version_if_absent, removed):
    set_, if_absent, removed_headers = upstream_changes(body_reply(exchange_for(provider)))
    assert if_absent == version_if_absent
    assert removed_headers & {"anthropic-version", "anthropic-beta"} == removed
    assert not {"anthropic-version", "anthropic-beta"} & set(set_)


@pytest.mark.parametrize(
    ("presented", "accepted"),
    [
        ({"x-api-key": "gk-team-0123"}, True),
        ({"authorization": "Bearer gk-team-0123"}, True),
        ({"x-api-key": "gk-team-0123x"}, False),
        ({"x-api-key": "gk-team-012"}, False),
        ({"authorization": "Bearer gk-team-0123 x"}, False),
        # One or more spaces after the scheme (RFC 9110's credentials).
        ({"authorization": "Bearer  gk-team-0123"}, True),
        ({"authorization": "Basic gk-team-0123"}, False),
        ({"x-api-key": ""}, False),
        ({}, False),
        # Both headers, as Claude Code sends them with ANTHROPIC_API_KEY and
        # ANTHROPIC_AUTH_TOKEN set: the gateway key in either one lets the caller in.
        ({"x-api-key": "gk-team-0123", "authorization": "Bearer sk-ant-own"}, True),
        ({"x-api-key": "sk-ant-own", "authorization": "Bearer gk-team-0123"}, True),
        ({"x-api-key": "sk-ant-own", "authorization": "Bearer sk-ant-other"}, False),
        ({"x-api-key": "gk-team-0123x", "authorization": "Bearer gk-team-012"}, False),
    ],
)
def test_a_gateway_key_is_matched_exactly(presented, accepted):
    try:
        _check_gateway_key(("gk-other", "gk-team-0123"), presented)
    except GatewayError as refused:
        assert not accepted
        assert (refused.status, refused.error_type) == (401, "authentication_error")
    else:
        assert accepted


@pytest.mark.parametrize("status", [400, 429, 500, 529])
def test_upstream_errors_are_counted_by_provider_and_status(status):
    exchange = exchange_for("  - model: openai/gpt-4.1\n    access_key: k\n")
    body_reply(exchange)
    exchange.on_response_headers({":status": str(status), "content-type": "application/json"})
    exchange.on_response_headers({":status": "200", "content-type": "application/json"})
    registry = exchange.runtime.metrics.registry
    samples = {
        (s.labels["provider"], s.labels["status"]): s.value
        for metric in registry.collect()
        if metric.name == "extproc_upstream_errors"
        for s in metric.samples
        if s.name == "extproc_upstream_errors_total"
    }
    assert samples == {("openai/gpt-4.1", str(status)): 1.0}
