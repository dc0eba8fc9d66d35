"""A failover attempt's handler: each attempt carries its own candidate's request, whatever
the attempts before it left in the headers, and says why it failed."""

from __future__ import annotations

import asyncio
import gzip

import orjson
import pytest
from envoy_data_plane.envoy.extensions.filters.http.ext_proc.v3 import (
    ProcessingModeBodySendMode,
)
from envoy_data_plane.envoy.service.ext_proc.v3 import (
    CommonResponseResponseStatus,
    ProcessingResponse,
)

from extproc.app import build_runtime
from extproc.config import parse
from extproc.decisions.routing import RouterStage
from extproc.errors import GatewayError
from extproc.proxy.attempt import Attempt, exchange_for
from extproc.proxy.exchange import Exchange
from extproc.proxy.wire import Phase
from tests.support.fake_openai import completion

CONFIG = """\
llm_providers:
  - model: anthropic/claude-sonnet-4-5
    access_key: sk-ant-sonnet
    default: true
  - model: anthropic/claude-haiku-4-5
    fallbacks: [openai/gpt-4.1]
  - model: openai/gpt-4.1
    provider_interface: openai
    access_key: sk-openai
"""
NAMESPACE = "envoy.filters.http.ext_proc"
BODY = {
    "model": "claude-haiku-4-5",
    "max_tokens": 5,
    "messages": [{"role": "user", "content": "hi"}],
}
HAIKU_CHAIN = "p__api_anthropic_com_443,fo__openai_gpt-4.1,fo__anthropic_claude-sonnet-4-5"
OPENAI_CHAIN = "p__api_openai_com_443,fo__anthropic_claude-sonnet-4-5"
HAIKU = "anthropic/claude-haiku-4-5"
GPT = "openai/gpt-4.1"
SONNET = "anthropic/claude-sonnet-4-5"


class Hook:
    """Stands for Runtime.record_attempt: what the cooldown table is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int | str, str | None]] = []

    def __call__(self, entry, outcome, headers) -> None:
        self.calls.append((entry, outcome, headers.get("retry-after")))


def runtime(hook: Hook | None = None):
    config = parse(CONFIG)
    built = build_runtime(config, RouterStage(config.routing))
    if hook is not None:
        built.record_attempt = hook
    return built


def start(slot: str, headers: dict[str, str], metadata: dict[str, str], hook=None) -> Attempt:
    """An attempt on `slot` past its request headers, with the downstream's `metadata`."""
    attempt = Attempt(runtime(hook), slot)
    phase = Phase("request_headers", headers, attributes={"xds.cluster_name": slot})
    phase.metadata = {NAMESPACE: metadata}
    asyncio.run(attempt.handle(phase))
    return attempt


def sent(attempt: Attempt, body: dict = BODY):
    """The request-body reply: (headers set, headers removed, body, metadata)."""
    reply = ProcessingResponse.parse(
        asyncio.run(
            attempt.handle(Phase("request_body", body=orjson.dumps(body), end_of_stream=True))
        )
    )
    common = reply.request_body.response
    set_headers = {
        o.header.key: o.header.raw_value.decode() for o in common.header_mutation.set_headers
    }
    metadata = reply.dynamic_metadata.to_dict()[NAMESPACE]
    return (
        set_headers,
        list(common.header_mutation.remove_headers),
        common.body_mutation.body if common.body_mutation else None,
        metadata,
    )


def test_the_second_attempt_carries_its_own_key_alone_and_its_own_translation():
    """Attempt 1 (the native head) passed the client's own key through; the OpenAI attempt
    removes it and sends its own, on its own path, translated from the client's body."""
    leaked = {":path": "/v1/messages", ":method": "POST", "x-api-key": "sk-ant-client"}
    attempt = start(
        "fo__openai_gpt-4.1", leaked, {"chain": HAIKU_CHAIN, "head": "anthropic/claude-haiku-4-5"}
    )
    set_headers, removed, body, metadata = sent(attempt)
    assert set_headers["authorization"] == "Bearer sk-openai"
    assert {"x-api-key", "authorization", "anthropic-version", "anthropic-beta"} <= set(removed)
    assert set_headers[":path"] == "/v1/chat/completions"
    assert orjson.loads(body)["model"] == "gpt-4.1"
    assert metadata["provider"] == "openai/gpt-4.1"


def test_a_native_attempt_after_a_translated_one_restores_the_clients_anthropic_headers():
    leaked = {
        ":path": "/v1/chat/completions",
        "x-envoy-original-path": "/v1/messages?beta=true",
        ":method": "POST",
        "authorization": "Bearer sk-openai",
    }
    kept = {"client:anthropic-beta": "tools-2024", "client:anthropic-version": "2023-06-01"}
    metadata = {"chain": OPENAI_CHAIN, "head": "openai/gpt-4.1", **kept}
    attempt = start("fo__anthropic_claude-sonnet-4-5", leaked, metadata)
    set_headers, removed, body, _ = sent(attempt, {**BODY, "model": "gpt-4.1"})
    assert set_headers["x-api-key"] == "sk-ant-sonnet"
    assert "authorization" in removed and "authorization" not in set_headers
    assert set_headers["anthropic-beta"] == "tools-2024"
    assert set_headers[":path"] == "/v1/messages?beta=true"
    assert orjson.loads(body)["model"] == "claude-sonnet-4-5"


def test_the_client_credentials_reach_no_entry_after_one_with_its_own_key():
    """The haiku entry passes the client's key through; after a keyed attempt the headers
    hold that entry's key, so none is sent: never another provider's."""
    config = (
        CONFIG.replace("    fallbacks: [openai/gpt-4.1]\n", "")
        + "    fallbacks: [anthropic/claude-haiku-4-5]\n"
    )
    attempt = Attempt(
        build_runtime(parse(config), RouterStage(parse(config).routing)),
        "fo__anthropic_claude-haiku-4-5",
    )
    phase = Phase(
        "request_headers", {":path": "/v1/chat/completions", "authorization": "Bearer sk-openai"}
    )
    phase.attributes = {"xds.cluster_name": "fo__anthropic_claude-haiku-4-5"}
    chain = "p__api_openai_com_443,fo__anthropic_claude-haiku-4-5,fo__anthropic_claude-sonnet-4-5"
    phase.metadata = {NAMESPACE: {"chain": chain, "head": "openai/gpt-4.1"}}
    asyncio.run(attempt.handle(phase))
    set_headers, removed, _, _ = sent(attempt)
    assert "authorization" in removed and "x-api-key" in removed
    assert "authorization" not in set_headers and "x-api-key" not in set_headers


def test_the_clients_own_key_kept_by_the_downstream_reaches_an_entry_that_takes_it():
    """Claude Code's key, replaced by gpt-4.1's for the first attempt, is what the haiku
    entry (which passes the client's credentials through) gets: from the metadata, where the
    downstream exchange kept it, and nothing of gpt-4.1's goes with it."""
    config = parse(
        CONFIG.replace("    fallbacks: [openai/gpt-4.1]\n", "")
        + "    fallbacks: [anthropic/claude-haiku-4-5]\n"
    )
    slot = "fo__anthropic_claude-haiku-4-5"
    attempt = Attempt(build_runtime(config, RouterStage(config.routing)), slot)
    phase = Phase(
        "request_headers", {":path": "/v1/chat/completions", "authorization": "Bearer sk-openai"}
    )
    phase.attributes = {"xds.cluster_name": slot}
    chain = f"p__api_openai_com_443,{slot},fo__anthropic_claude-sonnet-4-5"
    kept = {"client:x-api-key": "sk-ant-user"}
    phase.metadata = {NAMESPACE: {"chain": chain, "head": "openai/gpt-4.1", **kept}}
    asyncio.run(attempt.handle(phase))
    set_headers, removed, _, _ = sent(attempt)
    assert set_headers["x-api-key"] == "sk-ant-user"
    assert "authorization" in removed and "authorization" not in set_headers
    assert "sk-openai" not in str(set_headers)


def test_the_downstream_keeps_the_clients_credentials_only_for_a_later_entry_that_takes_them():
    def kept_for(config_text: str, model: str) -> dict[str, str]:
        config = parse(config_text)
        exchange = Exchange(build_runtime(config, RouterStage(config.routing)))
        user = {"x-api-key": "sk-ant-user", "authorization": "Bearer user-token"}
        exchange.on_request_headers({":path": "/v1/messages", ":method": "POST", **user}, False)
        body = orjson.dumps({**BODY, "model": model})
        reply = ProcessingResponse.parse(asyncio.run(exchange.on_request_body(body)))
        metadata = reply.dynamic_metadata.to_dict()[NAMESPACE]
        return {k: v for k, v in metadata.items() if k.startswith("client:")}

    takes_later = (
        CONFIG.replace("    fallbacks: [openai/gpt-4.1]\n", "")
        + "    fallbacks: [anthropic/claude-haiku-4-5]\n"
    )
    assert kept_for(takes_later, "openai/gpt-4.1") == {
        "client:x-api-key": "sk-ant-user",
        "client:authorization": "Bearer user-token",
    }
    # haiku → gpt-4.1 → sonnet: no entry after the head takes the client's credentials.
    assert kept_for(CONFIG, "claude-haiku-4-5") == {}


def answer(attempt: Attempt, status: int, headers: dict[str, str] | None = None):
    phase = Phase("response_headers", {":status": str(status), **(headers or {})})
    return ProcessingResponse.parse(asyncio.run(attempt.handle(phase)))


def test_a_failed_answer_is_reported_and_its_retry_after_passed_on():
    hook = Hook()
    attempt = start(
        "fo__anthropic_claude-sonnet-4-5",
        {":path": "/v1/messages"},
        {"chain": OPENAI_CHAIN, "head": "openai/gpt-4.1", "retry_after": "30"},
        hook,
    )
    sent(attempt)
    reply = answer(attempt, 429, {"retry-after": "7"})
    assert hook.calls == [
        ("openai/gpt-4.1", "unseen", None),
        ("anthropic/claude-sonnet-4-5", 429, "7"),
    ]
    metadata = reply.dynamic_metadata.to_dict()[NAMESPACE]
    assert metadata == {"failed:fo__anthropic_claude-sonnet-4-5": "429", "retry_after": "7"}
    assert attempt.finished  # a native answer needs nothing more from the sidecar
    # Its provider's answer can't pass for the (translated) head's, which the downstream
    # exchange would translate.
    assert mutation_of(reply.response_headers.response) == ({}, ["x-extproc-head-answer"])


def test_a_context_too_long_400_is_marked_for_the_next_candidate():
    hook = Hook()
    attempt = start(
        "fo__openai_gpt-4.1",
        {":path": "/v1/messages"},
        {"chain": HAIKU_CHAIN, "head": "anthropic/claude-haiku-4-5"},
        hook,
    )
    sent(attempt)
    held = answer(attempt, 400, {"content-type": "application/json"})
    # Read whole, the headers held meanwhile: the mark must come before Envoy decides.
    assert held.mode_override.response_body_mode == ProcessingModeBodySendMode.BUFFERED
    error = {
        "error": {
            "message": "too long",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
    reply = ProcessingResponse.parse(
        asyncio.run(
            attempt.handle(Phase("response_body", body=orjson.dumps(error), end_of_stream=True))
        )
    )
    mutation = reply.response_body.response.header_mutation
    assert {o.header.key: o.header.raw_value.decode() for o in mutation.set_headers}[
        "x-extproc-failover"
    ] == "context_too_long"
    # A 400 says nothing of the provider's health: the cooldown table hears it as it is.
    assert hook.calls[-1] == ("openai/gpt-4.1", 400, None)


def test_another_400_is_not_marked():
    attempt = start(
        "fo__openai_gpt-4.1",
        {":path": "/v1/messages"},
        {"chain": HAIKU_CHAIN, "head": "anthropic/claude-haiku-4-5"},
    )
    sent(attempt)
    answer(attempt, 400)
    error = {
        "error": {
            "message": "Invalid 'tools'",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    reply = ProcessingResponse.parse(
        asyncio.run(
            attempt.handle(Phase("response_body", body=orjson.dumps(error), end_of_stream=True))
        )
    )
    keys = [o.header.key for o in reply.response_body.response.header_mutation.set_headers]
    assert "x-extproc-failover" not in keys


def test_a_stream_is_an_attempt_only_when_envoy_names_a_failover_slot():
    built = runtime()
    downstream = Exchange(built)
    first = Phase("request_headers", {":path": "/v1/messages"})
    assert exchange_for(built, first, downstream) is downstream
    first.attributes = {"xds.cluster_name": "fo__openai_gpt-4.1"}
    assert isinstance(exchange_for(built, first, downstream), Attempt)


def decide(built, body: dict) -> tuple[ProcessingResponse, dict]:
    """The downstream exchange's reply to a request's body, and its decision metadata."""
    exchange = Exchange(built)
    headers = {":path": "/v1/messages", ":method": "POST", "anthropic-version": "2023-06-01"}
    exchange.on_request_headers(headers, False)
    reply = ProcessingResponse.parse(asyncio.run(exchange.on_request_body(orjson.dumps(body))))
    return reply, reply.dynamic_metadata.to_dict()[NAMESPACE]


def attempt_on(built, slot: str, decided: dict) -> tuple[Attempt, ProcessingResponse]:
    attempt = Attempt(built, slot)
    phase = Phase("request_headers", {":path": "/v1/messages"}, {"xds.cluster_name": slot})
    phase.metadata = {NAMESPACE: decided}
    return attempt, ProcessingResponse.parse(asyncio.run(attempt.handle(phase)))


def test_a_translated_head_is_rewritten_downstream_with_its_translation_in_the_metadata():
    """The downstream translates the head's request as it would without failover, but leaves
    the client's body (and its length) for later candidates: the translation goes in the
    metadata, where the head's Lua filter puts it in the body's place. The client's
    anthropic-* headers are kept there for a later native candidate; no price for usage.lua,
    as the sidecar reads (and costs) the head's answer itself."""
    built = runtime()
    exchange = Exchange(built)
    client = {":path": "/v1/messages", ":method": "POST", "anthropic-version": "2023-06-01"}
    exchange.on_request_headers({**client, "content-length": "99"}, False)
    body = orjson.dumps({**BODY, "model": "openai/gpt-4.1"})
    reply = ProcessingResponse.parse(asyncio.run(exchange.on_request_body(body)))
    common = reply.request_body.response
    assert common.body_mutation is None and common.clear_route_cache
    assert mutation_of(common) == (
        {
            "x-extproc-chain": OPENAI_CHAIN,
            ":path": "/v1/chat/completions",
            "x-envoy-original-path": "/v1/messages",
            "content-type": "application/json",
            "accept-encoding": "identity",
            "authorization": "Bearer sk-openai",
        },
        ["x-api-key", "authorization", "anthropic-version", "anthropic-beta"],
    )
    decided = reply.dynamic_metadata.to_dict()[NAMESPACE]
    translated = decided.pop("head_body").encode()
    assert orjson.loads(translated)["model"] == "gpt-4.1"
    assert orjson.loads(translated)["messages"] == [{"role": "user", "content": "hi"}]
    assert {k: decided[k] for k in ("chain", "head", "client:anthropic-version")} == {
        "chain": OPENAI_CHAIN,
        "head": GPT,
        "client:anthropic-version": "2023-06-01",
    }
    assert "price" not in decided
    assert not exchange.finished and exchange.translation is not None


def test_a_chains_head_is_sent_under_the_configured_namespace_and_a_native_one_spliced():
    """A native head's body keeps the client's bytes around its model, and its answer goes
    past the sidecar (the exchange ends); a translated head's keeps the exchange for its
    answer. Both decisions under the configured metadata namespace."""
    config = parse("sidecar: {metadata_namespace: io.extproc}\n" + CONFIG)
    built = build_runtime(config, RouterStage(config.routing))

    def reply_to(raw: bytes) -> tuple[Exchange, ProcessingResponse]:
        exchange = Exchange(built)
        exchange.on_request_headers({":path": "/v1/messages", ":method": "POST"}, False)
        return exchange, ProcessingResponse.parse(asyncio.run(exchange.on_request_body(raw)))

    raw = b'{"model": "anthropic/claude-haiku-4-5",  "max_tokens": 5, "messages": [ ]}'
    native, reply = reply_to(raw)
    assert reply.request_body.response.body_mutation.body == (
        b'{"model": "claude-haiku-4-5",  "max_tokens": 5, "messages": [ ]}'
    )
    assert reply.dynamic_metadata.to_dict()["io.extproc"]["chain"] == HAIKU_CHAIN
    assert native.finished
    translated, reply = reply_to(orjson.dumps({**BODY, "model": GPT}))
    decided = reply.dynamic_metadata.to_dict()["io.extproc"]
    assert decided["chain"] == OPENAI_CHAIN and "head_body" in decided
    assert not translated.finished


def test_the_heads_retry_after_as_an_http_date_is_read_against_the_clock():
    """The head's Lua filter writes its retry-after as the provider sent it: an HTTP-date is
    seconds from now for the next attempts and for Envoy's 503 after the last."""
    hook = Hook()
    built = runtime(hook)
    built.clock = lambda: NOW
    slot = "fo__anthropic_claude-sonnet-4-5"
    attempt = Attempt(built, slot)
    phase = Phase("request_headers", {":path": "/v1/messages"}, {"xds.cluster_name": slot})
    when = "Thu, 15 Jan 2027 08:00:12 GMT"
    failed = {"failed:p__api_openai_com_443": "429", "retry_after": when}
    phase.metadata = {NAMESPACE: {"chain": OPENAI_CHAIN, "head": GPT, **failed}}
    asyncio.run(attempt.handle(phase))
    assert hook.calls == [(GPT, 429, when)]
    sent(attempt)
    reply = answer(attempt, 503)
    assert metadata_of(reply)[NAMESPACE]["retry_after"] == "12"


def translated_head(hook: Hook | None = None) -> Exchange:
    """The downstream exchange of a request sent on OPENAI_CHAIN, past its body."""
    exchange = Exchange(runtime(hook))
    exchange.on_request_headers({":path": "/v1/messages", ":method": "POST"}, False)
    asyncio.run(exchange.on_request_body(orjson.dumps({**BODY, "model": GPT})))
    return exchange


def test_the_heads_answer_is_translated_downstream_and_a_later_candidates_passes():
    """The head's Lua filter marks its answer: translated here, as without failover, and told
    to the cooldown table; an unmarked answer is a later candidate's, which its own attempt
    translated and reported: it passes, and the exchange ends."""
    hook = Hook()
    head = translated_head(hook)
    reply = ProcessingResponse.parse(
        head.on_response_headers(
            {":status": "200", "content-type": "application/json", "x-extproc-head-answer": "1"}
        )
    )
    assert mutation_of(reply.response_headers.response) == (
        {"content-type": "application/json"},
        ["content-length", "content-encoding", "x-extproc-head-answer"],
    )
    assert reply.mode_override.response_body_mode == ProcessingModeBodySendMode.BUFFERED
    assert hook.calls == [(GPT, 200, None)]
    answered = completion("gpt-4.1", {"text": "Hi", "finish_reason": "stop"})
    whole = ProcessingResponse.parse(head.on_response_body(orjson.dumps(answered), True))
    translated = whole.response_body.response.body_mutation.body
    assert orjson.loads(translated)["content"] == [{"type": "text", "text": "Hi"}]
    assert head.finished

    hook = Hook()
    later = translated_head(hook)
    reply = ProcessingResponse.parse(
        later.on_response_headers({":status": "200", "content-type": "application/json"})
    )
    assert mutation_of(reply.response_headers.response) == ({}, [])
    assert reply.mode_override is None  # no body asked for
    assert later.finished and hook.calls == []


@pytest.mark.parametrize(
    ("failed", "told"),
    [
        ({"failed:p__api_openai_com_443": "429", "retry_after": "7"}, [(GPT, 429, "7")]),
        ({"failed:p__api_openai_com_443": "503"}, [(GPT, 503, "")]),
        ({"failed:p__api_openai_com_443": "context_too_long"}, []),
        ({}, [(GPT, "unseen", None)]),
    ],
    ids=["429", "503", "context-too-long", "no-answer"],
)
def test_the_heads_failure_its_lua_filter_wrote_down_reaches_the_cooldown_table(failed, told):
    """The head's answer goes past the sidecar; its Lua filter writes a failure (status,
    retry-after) to the metadata, and the next attempt tells the cooldown table and counts
    the failover by that reason. A context too long rests nothing; no mark at all means the
    head got no answer (refused, reset, silent)."""
    hook = Hook()
    decided = {"chain": OPENAI_CHAIN, "head": GPT, **failed}
    attempt = start("fo__anthropic_claude-sonnet-4-5", {":path": "/v1/messages"}, decided, hook)
    assert hook.calls == told
    reason = failed.get("failed:p__api_openai_com_443", "unseen")
    assert counted(attempt, "failovers", provider=GPT, reason=reason) == 1.0


def test_a_resting_candidate_after_the_head_is_left_out_of_the_chain():
    built = runtime()
    _, decided = decide(built, BODY)
    assert decided["chain"] == HAIKU_CHAIN
    built.cooldowns.failed("openai/gpt-4.1", 429, "60", built.clock())
    reply, decided = decide(built, BODY)
    assert decided["chain"] == "p__api_anthropic_com_443,fo__anthropic_claude-sonnet-4-5"
    mutation = reply.request_body.response.header_mutation
    sent = {o.header.key: o.header.raw_value.decode() for o in mutation.set_headers}
    assert sent["x-extproc-chain"] == decided["chain"]


def test_a_native_head_is_rewritten_downstream_and_its_decision_carries_its_price():
    """Without failover's help a native head's request costs what it did: the downstream
    sends its body with the head's model, and names in the metadata the chain, the head, no
    effort and the head's price for usage.lua."""
    built = runtime()
    reply, decided = decide(built, {**BODY, "model": "anthropic/claude-haiku-4-5"})
    assert orjson.loads(reply.request_body.response.body_mutation.body) == BODY
    assert decided == {
        "source": "explicit",
        "route": "",
        "requested_model": "anthropic/claude-haiku-4-5",
        "routed_model": "anthropic/claude-haiku-4-5",
        "provider": "anthropic/claude-haiku-4-5",
        "router_ms": 0.0,
        "note": "",
        "chain": HAIKU_CHAIN,
        "head": "anthropic/claude-haiku-4-5",
        "effort": "",
        "price": "1,5,0.1,1.25",
    }


def test_a_streamed_requests_chain_says_so():
    """Only a streamed answer's headers come before it is written: its chain takes the
    streamed route (`;stream`)."""
    reply, decided = decide(runtime(), {**BODY, "stream": True})
    assert decided["chain"] == HAIKU_CHAIN + ";stream"
    assert mutation_of(reply.request_body.response)[0]["x-extproc-chain"] == decided["chain"]


def test_a_chained_answer_is_not_counted_by_the_downstream_exchange():
    """With log_tokens the downstream exchange sees the chain's answer too, but the attempt
    that got it reported it (to the cooldown table and upstream_errors); the head, named in
    the decision, may not be the provider that answered."""
    config = parse("listener: {log_tokens: true}\n" + CONFIG)
    built = build_runtime(config, RouterStage(config.routing))
    exchange = Exchange(built)
    exchange.on_request_headers({":path": "/v1/messages", ":method": "POST"}, False)
    asyncio.run(exchange.on_request_body(orjson.dumps(BODY)))
    exchange.on_response_headers({":status": "429", "retry-after": "60"})
    assert not built.cooldowns.cooling(HAIKU, built.clock())
    registry = built.metrics.registry
    labels = {"provider": HAIKU, "status": "429"}
    assert registry.get_sample_value("extproc_upstream_errors_total", labels) is None


MILLION_IN = orjson.dumps(
    {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": "Hi"}],
        "usage": {"input_tokens": 1000000, "output_tokens": 0},
    }
)
"""A whole native answer of a million input tokens: its cost is the input price."""


def test_with_log_tokens_the_native_heads_answer_is_read_and_costed_as_the_heads():
    """The head's Lua filter marks its answer for the downstream exchange (no body to put in
    place: an empty `head_body`), which reads its counts and removes the mark; a later
    candidate's answer, unmarked, is left to its own attempt."""
    config = parse("listener: {log_tokens: true}\n" + CONFIG)
    built = build_runtime(config, RouterStage(config.routing))

    def downstream() -> tuple[Exchange, dict]:
        exchange = Exchange(built)
        exchange.on_request_headers({":path": "/v1/messages", ":method": "POST"}, False)
        reply = ProcessingResponse.parse(asyncio.run(exchange.on_request_body(orjson.dumps(BODY))))
        return exchange, reply.dynamic_metadata.to_dict()[NAMESPACE]

    head, decided = downstream()
    assert decided["head_body"] == "" and "price" not in decided
    marked = {":status": "200", "content-type": "application/json", "x-extproc-head-answer": "1"}
    reply = ProcessingResponse.parse(head.on_response_headers(marked))
    assert mutation_of(reply.response_headers.response) == ({}, ["x-extproc-head-answer"])
    assert reply.mode_override.response_body_mode == ProcessingModeBodySendMode.STREAMED
    head.on_response_body(MILLION_IN, True)
    registry = built.metrics.registry
    # claude-haiku-4-5's input price is 1 USD per million tokens.
    assert (
        registry.get_sample_value("extproc_cost_usd_total", {"provider": HAIKU, "route": ""}) == 1.0
    )
    refused = {":status": "400", "x-extproc-head-answer": "1"}
    other, _ = downstream()
    reply = ProcessingResponse.parse(other.on_response_headers(refused))
    assert mutation_of(reply.response_headers.response) == ({}, ["x-extproc-head-answer"])
    assert other.finished
    later, _ = downstream()
    reply = ProcessingResponse.parse(later.on_response_headers({":status": "200"}))
    assert reply.mode_override is None and later.finished


def test_with_log_tokens_a_later_native_candidate_reads_and_costs_its_own_answer():
    config = parse("listener: {log_tokens: true}\n" + CONFIG)
    built = build_runtime(config, RouterStage(config.routing))
    slot = "fo__anthropic_claude-sonnet-4-5"
    attempt = Attempt(built, slot)
    phase = Phase("request_headers", {":path": "/v1/messages"}, {"xds.cluster_name": slot})
    phase.metadata = {NAMESPACE: HAIKU_DECISION}
    asyncio.run(attempt.handle(phase))
    sent(attempt)
    reply = answer(attempt, 200, {"content-type": "application/json"})
    assert reply.mode_override.response_body_mode == ProcessingModeBodySendMode.STREAMED
    assert not attempt.finished
    answer_body(attempt, MILLION_IN)
    # claude-sonnet-4-5's input price is 3 USD per million tokens; nothing to the head.
    assert counted(attempt, "cost_usd", provider=SONNET, route="") == 3.0
    assert counted(attempt, "cost_usd", provider=HAIKU, route="") is None
    assert attempt.finished


NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC: the attempts' clock
OPENAI_CHUNK = (
    b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4.1","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}\n\n'
)
TOO_LONG = {
    "error": {
        "message": "This model's maximum context length is 128000 tokens.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}


def mutation_of(common) -> tuple[dict[str, str], list[str]]:
    """A reply's header changes: (headers set, headers removed)."""
    mutation = common.header_mutation
    if mutation is None:
        return {}, []
    set_headers = {o.header.key: o.header.raw_value.decode() for o in mutation.set_headers}
    return set_headers, list(mutation.remove_headers)


def metadata_of(reply: ProcessingResponse) -> dict:
    return reply.dynamic_metadata.to_dict() if reply.dynamic_metadata else {}


def answer_body(attempt: Attempt, body: bytes, end: bool = True) -> ProcessingResponse:
    phase = Phase("response_body", body=body, end_of_stream=end)
    return ProcessingResponse.parse(asyncio.run(attempt.handle(phase)))


def counted(attempt: Attempt, metric: str, **labels: str) -> float | None:
    return attempt.runtime.metrics.registry.get_sample_value(f"extproc_{metric}_total", labels)


def gpt_attempt(metadata: dict[str, str] | None = None, body: dict = BODY) -> Attempt:
    """The OpenAI attempt after the native haiku head, past its request body."""
    attempt = start("fo__openai_gpt-4.1", {":path": "/v1/messages"}, metadata or {})
    attempt.runtime.clock = lambda: NOW
    sent(attempt, body)
    return attempt


HAIKU_DECISION = {"chain": HAIKU_CHAIN, "head": HAIKU}


def test_a_translated_streamed_answer_gets_the_clients_headers_and_its_events_chunk_by_chunk():
    """A gzip-encoded OpenAI stream: the client is told of an Anthropic event stream, with no
    length or encoding (the sidecar inflates and rewrites each chunk), and nothing is marked."""
    attempt = gpt_attempt(HAIKU_DECISION, {**BODY, "stream": True})
    encoded = {"content-type": "text/event-stream", "content-encoding": "gzip"}
    reply = answer(attempt, 200, {**encoded, "content-length": "180"})
    assert mutation_of(reply.response_headers.response) == (
        {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"},
        ["content-length", "content-encoding", "x-extproc-head-answer"],
    )
    assert reply.mode_override.response_body_mode == ProcessingModeBodySendMode.STREAMED
    assert metadata_of(reply) == {}
    events = answer_body(attempt, gzip.compress(OPENAI_CHUNK), end=False)
    translated = events.response_body.response.body_mutation.body
    assert translated.startswith(b"event: message_start\n")
    assert b'"delta":{"type":"text_delta","text":"Hi"}' in translated
    # The stream goes on: no end of message yet, and no header to change any more.
    assert b"message_stop" not in translated and not attempt.finished
    assert mutation_of(events.response_body.response) == ({}, [])
    assert counted(attempt, "upstream_errors", provider=GPT, status="200") is None


@pytest.mark.parametrize(("decided", "route"), [({"route": "coding"}, "coding"), ({}, "")])
def test_a_translated_whole_answer_is_read_whole_and_costed_under_the_decisions_route(
    decided, route
):
    attempt = gpt_attempt({**HAIKU_DECISION, **decided})
    reply = answer(attempt, 200, {"content-type": "application/json"})
    assert mutation_of(reply.response_headers.response) == (
        {"content-type": "application/json"},
        ["content-length", "content-encoding", "x-extproc-head-answer"],
    )
    assert reply.mode_override.response_body_mode == ProcessingModeBodySendMode.BUFFERED
    answered = completion("gpt-4.1", {"text": "Hi", "finish_reason": "stop"})
    million_in = {"prompt_tokens": 1000000, "completion_tokens": 0, "total_tokens": 1000000}
    completion_body = orjson.dumps({**answered, "usage": million_in})
    whole = answer_body(attempt, completion_body).response_body.response
    assert orjson.loads(whole.body_mutation.body)["content"] == [{"type": "text", "text": "Hi"}]
    # gpt-4.1's input price is 2 USD per million tokens.
    assert counted(attempt, "cost_usd", provider=GPT, route=route) == 2.0


@pytest.mark.parametrize(
    ("earlier", "this", "soonest"),
    [
        ("30", "7", "7"),
        ("3", "7", "3"),
        ("30", "", "30"),
        ("", "Thu, 15 Jan 2027 08:00:12 GMT", "12"),
        ("", "1000000", "1000000"),
        ("", "0.25", "0.25"),
    ],
    ids=["this-sooner", "earlier-sooner", "this-none", "http-date", "a-long-one", "a-fraction"],
)
def test_a_translated_failed_answer_marks_its_slot_and_the_soonest_retry_after(
    earlier, this, soonest
):
    """The earlier attempts' soonest retry-after (metadata) and this answer's (seconds or an
    HTTP-date, read against the clock): the next attempts get the sooner."""
    decision = {**HAIKU_DECISION, "retry_after": earlier} if earlier else HAIKU_DECISION
    attempt = gpt_attempt(decision)
    reply = answer(attempt, 503, {"retry-after": this} if this else {})
    assert metadata_of(reply) == {
        NAMESPACE: {"failed:fo__openai_gpt-4.1": "503", "retry_after": soonest}
    }
    assert mutation_of(reply.response_headers.response)[0] == {"content-type": "application/json"}
    assert reply.mode_override.response_body_mode == ProcessingModeBodySendMode.BUFFERED


@pytest.mark.parametrize(("status", "counts"), [(200, None), (399, None), (400, 1.0), (429, 1.0)])
def test_an_answer_of_400_or_more_is_counted_as_an_upstream_error(status, counts):
    attempt = start("fo__anthropic_claude-sonnet-4-5", {":path": "/v1/messages"}, HAIKU_DECISION)
    sent(attempt)
    answer(attempt, status)
    assert counted(attempt, "upstream_errors", provider=SONNET, status=str(status)) == counts


def test_a_translated_context_too_long_400_is_translated_whole_and_marked():
    """Held until its whole body is read: the client gets Anthropic's error with its own
    length, the route the failover mark, the next attempts the reason."""
    attempt = gpt_attempt({**HAIKU_DECISION, "retry_after": "30"})
    held = answer(attempt, 400, {"content-type": "application/json"})
    assert mutation_of(held.response_headers.response) == ({}, [])
    assert metadata_of(held) == {}
    assert held.mode_override.response_body_mode == ProcessingModeBodySendMode.BUFFERED
    reply = answer_body(attempt, orjson.dumps(TOO_LONG))
    common = reply.response_body.response
    translated = common.body_mutation.body
    assert orjson.loads(translated) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": TOO_LONG["error"]["message"]},
    }
    assert mutation_of(common) == (
        {
            "content-type": "application/json",
            "x-extproc-failover": "context_too_long",
            "content-length": str(len(translated)),
        },
        ["content-encoding", "x-extproc-head-answer"],
    )
    assert metadata_of(reply) == {
        NAMESPACE: {"failed:fo__openai_gpt-4.1": "context_too_long", "retry_after": "30"}
    }
    assert attempt.finished


def test_a_gzipped_translated_context_too_long_400_is_marked_too():
    """A provider that gzips its error although asked not to: read inflated."""
    attempt = gpt_attempt(HAIKU_DECISION)
    answer(attempt, 400, {"content-type": "application/json", "content-encoding": "gzip"})
    reply = answer_body(attempt, gzip.compress(orjson.dumps(TOO_LONG)))
    headers, _ = mutation_of(reply.response_body.response)
    assert headers["x-extproc-failover"] == "context_too_long"
    assert metadata_of(reply) == {NAMESPACE: {"failed:fo__openai_gpt-4.1": "context_too_long"}}


def test_another_translated_400_is_translated_and_not_marked():
    """Gzip-encoded here: the client gets it inflated, without the encoding."""
    attempt = gpt_attempt(HAIKU_DECISION)
    answer(attempt, 400, {"content-type": "application/json", "content-encoding": "gzip"})
    invalid = {"error": {"message": "Invalid 'tools'", "type": "invalid_request_error"}}
    reply = answer_body(attempt, gzip.compress(orjson.dumps(invalid)))
    common = reply.response_body.response
    assert orjson.loads(common.body_mutation.body)["error"]["message"] == "Invalid 'tools'"
    assert mutation_of(common) == (
        {"content-type": "application/json", "content-length": str(len(common.body_mutation.body))},
        ["content-encoding", "x-extproc-head-answer"],
    )
    assert metadata_of(reply) == {}


@pytest.mark.parametrize(
    ("message", "marked"),
    [("prompt is too long: 250000 tokens > 200000 maximum", True), ("tools: bad", False)],
)
def test_a_native_400_passes_as_it_came_marked_only_when_the_prompt_is_too_long(message, marked):
    attempt = start("fo__anthropic_claude-sonnet-4-5", {":path": "/v1/messages"}, HAIKU_DECISION)
    sent(attempt)
    answer(attempt, 400)
    error = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    reply = answer_body(attempt, orjson.dumps(error))
    common = reply.response_body.response
    assert common.body_mutation is None
    # A provider's answer can't pass for the head's, which the downstream exchange translates.
    assert mutation_of(common) == (
        {"x-extproc-failover": "context_too_long"} if marked else {},
        ["x-extproc-head-answer"],
    )
    failed = {NAMESPACE: {"failed:fo__anthropic_claude-sonnet-4-5": "context_too_long"}}
    assert metadata_of(reply) == (failed if marked else {})
    assert attempt.finished


@pytest.mark.parametrize("name", ["request_body", "response_headers", "response_body"])
def test_a_phase_before_the_request_headers_is_an_api_error(name):
    attempt = Attempt(runtime(), "fo__openai_gpt-4.1")
    with pytest.raises(GatewayError) as raised:
        asyncio.run(attempt.handle(Phase(name, body=b"{}", end_of_stream=True)))
    assert (raised.value.error_type, raised.value.status) == ("api_error", 500)
    assert raised.value.message == f"ext_proc {name} came before the headers"


def test_a_slot_whose_entry_is_gone_is_an_api_error():
    attempt = Attempt(runtime(), "fo__openai_gpt-5")
    phase = Phase(
        "request_headers",
        {":path": "/v1/messages"},
        attributes={"xds.cluster_name": "fo__openai_gpt-5"},
    )
    with pytest.raises(GatewayError) as raised:
        asyncio.run(attempt.handle(phase))
    assert (raised.value.error_type, raised.value.status) == ("api_error", 500)
    assert raised.value.message == "no provider entry for failover slot fo__openai_gpt-5"


@pytest.mark.parametrize(
    ("failed", "reason", "told"),
    [({"failed:fo__openai_gpt-4.1": "429"}, "429", []), ({}, "unseen", [(GPT, "unseen", None)])],
    ids=["read", "unseen"],
)
def test_the_third_attempt_counts_the_second_attempts_failure_by_its_reason(failed, reason, told):
    """A streamed chain: the sonnet attempt follows gpt-4.1's; a failure no handler read is
    news for the cooldown table too."""
    hook = Hook()
    decision = {**HAIKU_DECISION, "chain": HAIKU_CHAIN + ";stream", **failed}
    attempt = start("fo__anthropic_claude-sonnet-4-5", {":path": "/v1/messages"}, decision, hook)
    assert counted(attempt, "failovers", provider=GPT, reason=reason) == 1.0
    assert counted(attempt, "failovers", provider=HAIKU, reason="unseen") is None
    assert hook.calls == told
    assert attempt.earlier == [
        parse(CONFIG).provider_named(HAIKU),
        parse(CONFIG).provider_named(GPT),
    ]


def test_the_second_attempt_counts_the_native_heads_failure_as_unseen():
    attempt = start("fo__openai_gpt-4.1", {":path": "/v1/messages"}, HAIKU_DECISION)
    assert counted(attempt, "failovers", provider=HAIKU, reason="unseen") == 1.0


def test_an_attempt_on_a_slot_the_chain_does_not_name_counts_no_failover():
    hook = Hook()
    decision = {"chain": "fo__openai_gpt-4.1", "head": GPT}
    attempt = start("fo__anthropic_claude-sonnet-4-5", {":path": "/v1/messages"}, decision, hook)
    assert counted(attempt, "failovers", provider=GPT, reason="unseen") is None
    assert hook.calls == []


def test_an_attempt_without_the_decision_sends_its_candidates_request():
    """No decision in the metadata (not forwarded): the attempt still sends its own request."""
    slot = "fo__openai_gpt-4.1"
    attempt = Attempt(runtime(), slot)
    phase = Phase(
        "request_headers", {":path": "/v1/messages"}, attributes={"xds.cluster_name": slot}
    )
    reply = ProcessingResponse.parse(asyncio.run(attempt.handle(phase)))
    assert reply.request_headers.response.status == CommonResponseResponseStatus.CONTINUE
    set_headers, _, body, _ = sent(attempt)
    assert set_headers["authorization"] == "Bearer sk-openai"
    assert orjson.loads(body)["model"] == "gpt-4.1"


def test_a_native_attempt_sends_the_clients_path_and_anthropic_headers_as_they_came():
    """No x-envoy-original-path (no earlier attempt rewrote the path): the request's own, with
    its query; the client's anthropic-* headers kept for the next attempts too."""
    client = {
        ":path": "/v1/messages?beta=true",
        "anthropic-beta": "b1",
        "anthropic-version": "2023-06-01",
    }
    attempt = start("fo__anthropic_claude-sonnet-4-5", client, {"chain": OPENAI_CHAIN, "head": GPT})
    set_headers, _, _, metadata = sent(attempt)
    assert set_headers[":path"] == "/v1/messages?beta=true"
    assert (set_headers["anthropic-beta"], set_headers["anthropic-version"]) == ("b1", "2023-06-01")
    assert metadata == {
        "provider": SONNET,
        "routed_model": SONNET,
        "client:anthropic-beta": "b1",
        "client:anthropic-version": "2023-06-01",
        "price": "3,15,0.3,3.75",
    }
    assert not attempt.body_due


def test_a_translated_attempt_removes_the_clients_anthropic_headers_and_keeps_them():
    client = {":path": "/v1/messages", "anthropic-beta": "b1", "anthropic-version": "2023-06-01"}
    attempt = start("fo__openai_gpt-4.1", client, HAIKU_DECISION)
    reply = ProcessingResponse.parse(
        asyncio.run(
            attempt.handle(Phase("request_body", body=orjson.dumps(BODY), end_of_stream=True))
        )
    )
    common = reply.request_body.response
    set_headers, removed = mutation_of(common)
    assert not [name for name in set_headers if name.startswith("anthropic-")]
    assert {"anthropic-beta", "anthropic-version"} <= set(removed)
    assert not common.clear_route_cache  # an upstream filter's reply has no route to clear
    assert reply.dynamic_metadata.to_dict()[NAMESPACE] == {
        "provider": GPT,
        "routed_model": GPT,
        "client:anthropic-beta": "b1",
        "client:anthropic-version": "2023-06-01",
        "price": "2,8,0.5,2",
    }


def test_a_native_attempt_asks_for_the_decisions_effort_and_keeps_the_bodys_bytes():
    attempt = start(
        "fo__anthropic_claude-sonnet-4-5",
        {":path": "/v1/messages"},
        {**HAIKU_DECISION, "effort": "low"},
    )
    thinking = {**BODY, "max_tokens": 32000, "thinking": {"type": "enabled", "budget_tokens": 9000}}
    _, _, body, _ = sent(attempt, thinking)
    assert orjson.loads(body)["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    # Without an effort only the model's value changes: every other byte stays as it came.
    plain = start("fo__anthropic_claude-sonnet-4-5", {":path": "/v1/messages"}, HAIKU_DECISION)
    raw = b'{"model": "claude-haiku-4-5",  "max_tokens": 5, "messages": []}'
    phase = Phase("request_body", body=raw, end_of_stream=True)
    reply = ProcessingResponse.parse(asyncio.run(plain.handle(phase)))
    assert reply.request_body.response.body_mutation.body == (
        b'{"model": "claude-sonnet-4-5",  "max_tokens": 5, "messages": []}'
    )


KEYLESS = """\
llm_providers:
  - model: anthropic/claude-haiku-4-5
    default: true
  - model: anthropic/claude-opus-4-1
  - model: openai/gpt-4.1
    provider_interface: openai
    access_key: sk-openai
  - model: ollama/qwen3
    base_url: http://127.0.0.1:11434
"""
USER_KEY = {"client:x-api-key": "sk-ant-user"}


def credentials_sent(slot: str, chain: str, head: str, headers: dict, kept: dict):
    """The credential headers the attempt on `slot` sets and removes (KEYLESS's entries)."""
    config = parse(KEYLESS)
    attempt = Attempt(build_runtime(config, RouterStage(config.routing)), slot)
    phase = Phase("request_headers", {":path": "/v1/messages", **headers}, attributes={SLOT: slot})
    phase.metadata = {NAMESPACE: {"chain": chain, "head": head, **kept}}
    asyncio.run(attempt.handle(phase))
    set_headers, removed, _, _ = sent(attempt)
    credentials = ("x-api-key", "authorization")
    return (
        {h: v for h, v in set_headers.items() if h in credentials},
        sorted(h for h in removed if h in credentials),
    )


SLOT = "xds.cluster_name"
OPUS, OLLAMA = "fo__anthropic_claude-opus-4-1", "fo__ollama_qwen3"


def test_after_a_native_head_that_passed_the_clients_key_an_entry_that_takes_it_leaves_it():
    """The client's key went to haiku (no key of its own) and stays in the headers for opus."""
    chain = f"p__api_anthropic_com_443,{OPUS}"
    sent_auth = credentials_sent(OPUS, chain, HAIKU, {"x-api-key": "sk-ant-user"}, {})
    assert sent_auth == ({}, [])


def test_a_keyless_entry_that_takes_no_client_credentials_gets_none_of_them():
    """A local model with no key after a keyed entry: the client's key, kept in the
    metadata for an Anthropic entry, does not reach it."""
    chain = f"fo__openai_gpt-4.1,{OLLAMA}"
    sent_auth = credentials_sent(
        OLLAMA, chain, GPT, {"authorization": "Bearer sk-openai"}, USER_KEY
    )
    assert sent_auth == ({}, ["authorization", "x-api-key"])


def test_after_a_keyless_entry_that_took_no_credentials_an_entry_that_takes_them_gets_the_kept():
    """ollama's attempt removed the client's key; opus gets it back from the metadata."""
    chain = f"{OLLAMA},{OPUS}"
    sent_auth = credentials_sent(OPUS, chain, "ollama/qwen3", {}, USER_KEY)
    assert sent_auth == ({"x-api-key": "sk-ant-user"}, ["authorization"])


def test_a_failover_slots_stream_is_handled_as_that_slots_attempt():
    built = runtime()
    first = Phase(
        "request_headers", {":path": "/v1/messages"}, attributes={SLOT: "fo__openai_gpt-4.1"}
    )
    first.metadata = {NAMESPACE: HAIKU_DECISION}
    attempt = exchange_for(built, first, Exchange(built))
    asyncio.run(attempt.handle(first))
    set_headers, _, body, _ = sent(attempt)
    assert set_headers["authorization"] == "Bearer sk-openai"
    assert orjson.loads(body)["model"] == "gpt-4.1"
    assert counted(attempt, "failovers", provider=HAIKU, reason="unseen") == 1.0


def test_an_attempt_reads_and_writes_the_configured_metadata_namespace():
    config = parse(CONFIG + "sidecar: {metadata_namespace: acme.gw}\n")
    attempt = Attempt(build_runtime(config, RouterStage(config.routing)), "fo__openai_gpt-4.1")
    phase = Phase("request_headers", {":path": "/v1/messages"}, attributes={SLOT: attempt.slot})
    phase.metadata = {"acme.gw": HAIKU_DECISION}
    asyncio.run(attempt.handle(phase))
    assert counted(attempt, "failovers", provider=HAIKU, reason="unseen") == 1.0
    body = Phase("request_body", body=orjson.dumps(BODY), end_of_stream=True)
    reply = ProcessingResponse.parse(asyncio.run(attempt.handle(body)))
    assert metadata_of(reply)["acme.gw"]["provider"] == GPT
    assert metadata_of(answer(attempt, 429)) == {"acme.gw": {"failed:fo__openai_gpt-4.1": "429"}}
