"""The exchange feeds the cooldown table from the answers it reads, and routes around a
provider that rests: the next request goes to its next candidate, counted by provider."""

from __future__ import annotations

import asyncio
import dataclasses

import orjson
import pytest
from envoy_data_plane.envoy.service.ext_proc.v3 import ProcessingResponse

from extproc.app import build_runtime
from extproc.config import Config, parse
from extproc.decisions.routing import RouterStage
from extproc.proxy.exchange import Exchange, Runtime

PROVIDERS = """\
llm_providers:
  - model: openai/gpt-4.1
    base_url: http://10.0.0.2:8080/v1
    access_key: sk-openai
    fallbacks: [anthropic/claude-sonnet-4-5]
  - model: anthropic/claude-sonnet-4-5
    base_url: http://10.0.0.3:8080
    access_key: sk-ant
    default: true
"""
# Without failover: the exchange itself reads the answer (with failover, each attempt's
# handler does: tests/unit/proxy/test_attempt.py).
CONFIG = parse("listener: {failover: false}\n" + PROVIDERS)
NOW = 1_796_000_000.0
ASKED = {
    "model": "openai/gpt-4.1",
    "max_tokens": 5,
    "messages": [{"role": "user", "content": "hi"}],
}


def runtime_at(now: float, config: Config = CONFIG) -> Runtime:
    runtime = build_runtime(config, RouterStage(config.routing))
    return dataclasses.replace(runtime, clock=lambda: now)


def send(runtime: Runtime, answer: dict[str, str] | None = None) -> tuple[Exchange, str]:
    """One request through a fresh exchange: it and the cluster it went to; then, when given,
    the answer's headers."""
    exchange = Exchange(runtime)
    headers = {":path": "/v1/messages", ":method": "POST", "content-type": "application/json"}
    exchange.on_request_headers(headers, False)
    reply = ProcessingResponse.parse(asyncio.run(exchange.on_request_body(orjson.dumps(ASKED))))
    mutation = reply.request_body.response.header_mutation
    sent = {o.header.key: o.header.raw_value.decode() for o in mutation.set_headers}
    if answer is not None:
        exchange.on_response_headers(answer)
    return exchange, sent["x-extproc-cluster"]


def skips(runtime: Runtime, provider: str) -> float:
    value = runtime.metrics.registry.get_sample_value(
        "extproc_cooling_skips_total", {"provider": provider}
    )
    return value or 0


def test_a_429_with_retry_after_sends_the_next_requests_to_the_next_candidate() -> None:
    runtime = runtime_at(NOW)
    _, cluster = send(runtime, {":status": "429", "retry-after": "30"})
    assert cluster == "10_0_0_2_8080"
    later = dataclasses.replace(runtime, clock=lambda: NOW + 10)
    exchange, cluster = send(later)
    assert cluster == "10_0_0_3_8080"
    assert exchange.decision.note == (
        "openai/gpt-4.1 skipped: cooling down 20 s after 429, retry-after 30 s"
    )
    assert skips(runtime, "openai/gpt-4.1") == 1
    _, cluster = send(dataclasses.replace(runtime, clock=lambda: NOW + 30))
    assert cluster == "10_0_0_2_8080"  # its rest is over
    assert skips(runtime, "openai/gpt-4.1") == 1


def test_retry_after_ms_reaches_the_table() -> None:
    runtime = runtime_at(NOW)
    send(runtime, {":status": "529", "retry-after-ms": "90000", "retry-after": "1"})
    cooling = runtime.cooldowns.cooling("openai/gpt-4.1", NOW)
    assert (cooling.seconds, cooling.why) == (90, "529, retry-after 90 s")


@pytest.mark.parametrize(
    ("status", "why"), [("503", "unreachable"), ("504", "timeout"), ("529", None), ("413", None)]
)
def test_envoys_own_replies_count_when_they_say_the_provider_failed(
    status: str, why: str | None
) -> None:
    """503: refused, reset or no address; 504: silent. Its 529 is the gateway's own
    concurrency limit and its 413 the request's size: no fault of the provider's."""
    runtime = runtime_at(NOW)
    send(runtime, {":status": status, "x-extproc-local-reply": "api_error"})
    assert runtime.cooldowns.cooling("openai/gpt-4.1", NOW).why == (why or "")


def test_the_providers_own_answer_ends_its_rest() -> None:
    runtime = runtime_at(NOW)
    send(runtime, {":status": "500"})
    # While it rests, the fallback answers: that says nothing of gpt-4.1.
    _, cluster = send(runtime, {":status": "200", "content-type": "text/event-stream"})
    assert cluster == "10_0_0_3_8080"
    assert runtime.cooldowns.cooling("openai/gpt-4.1", NOW).why == "500"
    after = dataclasses.replace(runtime, clock=lambda: NOW + 1)
    send(after, {":status": "503"})
    assert runtime.cooldowns.cooling("openai/gpt-4.1", NOW + 1).why == "503, 2 failures in a row"
    send(dataclasses.replace(runtime, clock=lambda: NOW + 3), {":status": "400"})
    assert not runtime.cooldowns.cooling("openai/gpt-4.1", NOW + 3)
    send(dataclasses.replace(runtime, clock=lambda: NOW + 3), {":status": "503"})
    assert runtime.cooldowns.cooling("openai/gpt-4.1", NOW + 3).why == "503"  # a new streak


def test_a_longest_rest_of_0_turns_cooldowns_off_even_for_rests_begun() -> None:
    runtime = runtime_at(NOW)
    send(runtime, {":status": "429", "retry-after": "30"})
    off = runtime_at(NOW, parse("listener: {failover: false, cooldown_max_s: 0}\n" + PROVIDERS))
    reloaded = dataclasses.replace(off, cooldowns=runtime.cooldowns)  # as app.Sidecar.reload
    exchange, cluster = send(reloaded, {":status": "503"})
    assert (cluster, exchange.decision.note) == ("10_0_0_2_8080", "")
    assert not reloaded.cooldowns.cooling("openai/gpt-4.1", NOW)  # a 503: no rest either


def test_an_attempt_recorded_from_elsewhere_counts_the_same() -> None:
    """What failover's per-attempt handler calls: a refused connection, then a 429 that says
    when, each under the config's longest rest."""
    runtime = runtime_at(
        NOW, parse("listener: {failover: false, cooldown_max_s: 20}\n" + PROVIDERS)
    )
    runtime.record_attempt("openai/gpt-4.1", "refused", {})
    exchange, cluster = send(runtime)
    assert cluster == "10_0_0_3_8080"
    assert exchange.decision.note == "openai/gpt-4.1 skipped: cooling down 1 s after refused"
    runtime.record_attempt("openai/gpt-4.1", 429, {"retry-after": "60"})
    assert runtime.cooldowns.cooling("openai/gpt-4.1", NOW).seconds == 20


CHAINED = """\
llm_providers:
  - model: anthropic/claude-haiku-4-5
    access_key: sk-ant
    fallbacks: [anthropic/claude-sonnet-4-5, anthropic/claude-opus-4-1]
  - model: anthropic/claude-sonnet-4-5
    base_url: http://10.0.0.3:8080
    access_key: sk-ant
  - model: anthropic/claude-opus-4-1
    base_url: http://10.0.0.4:8080
    access_key: sk-ant
"""


def test_a_fallback_is_back_in_the_chain_once_its_rest_is_over() -> None:
    """A resting fallback is left out of the chains sent while it rests, and only then: at
    the deadline of its rest the next request may fail over to it again."""
    runtime = runtime_at(NOW, parse(CHAINED))
    runtime.record_attempt("anthropic/claude-sonnet-4-5", 429, {"retry-after": "30"})
    asked = {**ASKED, "model": "anthropic/claude-haiku-4-5"}
    headers = {":path": "/v1/messages", ":method": "POST", "content-type": "application/json"}
    chains = []
    for now in (NOW + 29, NOW + 30):
        exchange = Exchange(dataclasses.replace(runtime, clock=lambda now=now: now))
        exchange.on_request_headers(headers, False)
        reply = ProcessingResponse.parse(asyncio.run(exchange.on_request_body(orjson.dumps(asked))))
        mutation = reply.request_body.response.header_mutation
        sent = {o.header.key: o.header.raw_value.decode() for o in mutation.set_headers}
        chains.append(sent["x-extproc-chain"])
    assert chains == [
        "p__api_anthropic_com_443,fo__anthropic_claude-opus-4-1",
        "p__api_anthropic_com_443,fo__anthropic_claude-sonnet-4-5,fo__anthropic_claude-opus-4-1",
    ]
