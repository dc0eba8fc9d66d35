"""A failover attempt's handler: each attempt carries its own candidate's request, whatever
the attempts before it left in the headers, and says why it failed."""

from __future__ import annotations

import asyncio

import orjson
from envoy_data_plane.envoy.extensions.filters.http.ext_proc.v3 import (
    ProcessingModeBodySendMode,
    ProcessingModeHeaderSendMode,
)
from envoy_data_plane.envoy.service.ext_proc.v3 import (
    CommonResponseResponseStatus,
    ProcessingResponse,
)

from extproc.app import build_runtime
from extproc.config import parse
from extproc.decisions.routing import RouterStage
from extproc.proxy.attempt import Attempt, exchange_for
from extproc.proxy.exchange import Exchange
from extproc.proxy.wire import Phase

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
OPENAI_CHAIN = "fo__openai_gpt-4.1,fo__anthropic_claude-sonnet-4-5"


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
    chain = "fo__openai_gpt-4.1,fo__anthropic_claude-haiku-4-5,fo__anthropic_claude-sonnet-4-5"
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
    chain = f"fo__openai_gpt-4.1,{slot},fo__anthropic_claude-sonnet-4-5"
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


def handoffs_counted(built) -> dict[str, float]:
    """extproc_handoffs_total by outcome, those counted."""
    registry = built.metrics.registry
    counts = {
        outcome: registry.get_sample_value("extproc_handoffs_total", {"outcome": outcome})
        for outcome in ("taken", "missed")
    }
    return {outcome: count for outcome, count in counts.items() if count}


def test_a_translated_heads_attempt_takes_the_downstream_translation_in_the_bodys_place():
    """The downstream translates the head's request as it would without failover and leaves
    the client's body for later candidates; the head's attempt puts the translation in its
    place in reply to the headers, with its length, and is not sent the body."""
    built = runtime()
    reply, decided = decide(built, {**BODY, "model": "openai/gpt-4.1"})
    assert reply.request_body.response.body_mutation is None  # the client's body stays
    assert decided["chain"] == OPENAI_CHAIN and len(built.handoffs) == 1

    attempt, taken = attempt_on(built, "fo__openai_gpt-4.1", decided)
    common = taken.request_headers.response
    assert common.status == CommonResponseResponseStatus.CONTINUE_AND_REPLACE
    translated = common.body_mutation.body
    assert orjson.loads(translated)["model"] == "gpt-4.1"
    assert orjson.loads(translated)["messages"] == [{"role": "user", "content": "hi"}]
    set_headers = {
        o.header.key: o.header.raw_value.decode() for o in common.header_mutation.set_headers
    }
    assert set_headers["x-extproc-content-length"] == str(len(translated))
    assert set_headers["authorization"] == "Bearer sk-openai"
    assert set_headers[":path"] == "/v1/chat/completions"
    assert taken.mode_override.response_header_mode == ProcessingModeHeaderSendMode.SEND
    assert taken.dynamic_metadata.to_dict()[NAMESPACE]["provider"] == "openai/gpt-4.1"
    assert not attempt.body_due and attempt.translation is not None
    assert len(built.handoffs) == 0 and built.handoffs.bytes == 0
    assert handoffs_counted(built) == {"taken": 1}


def test_without_its_handoff_an_attempt_reads_the_body_and_a_later_one_never_takes_it():
    built = runtime()
    _, decided = decide(built, {**BODY, "model": "openai/gpt-4.1"})
    # The next candidate's attempt leaves the head's translation alone.
    later, reply = attempt_on(built, "fo__anthropic_claude-sonnet-4-5", decided)
    assert reply.request_headers.response.status == CommonResponseResponseStatus.CONTINUE
    assert later.body_due and len(built.handoffs) == 1
    # Another sidecar process (or the translation gone): the head's attempt reads the body.
    elsewhere = runtime()
    head, reply = attempt_on(elsewhere, "fo__openai_gpt-4.1", decided)
    assert reply.request_headers.response.body_mutation is None and head.body_due
    assert handoffs_counted(built) == {} and handoffs_counted(elsewhere) == {"missed": 1}
    set_headers, _, body, _ = sent(head, {**BODY, "model": "openai/gpt-4.1"})
    assert orjson.loads(body)["model"] == "gpt-4.1"
    assert "x-extproc-content-length" not in set_headers


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
