"""Through the real Envoy: a provider that answered 429 rests for its `retry-after`. The
request it failed goes on to its next candidate (failover), and the requests routed to it
meanwhile go there without reaching it, the access log says why; once the rest is over it
gets them again.

A chain head's failed answer goes past the sidecar's failover handler: its slot's Lua filter
writes it down, with its retry-after, and the next attempt's handler reports it; one whose
connection is refused is reported by the next attempt's too. The fakes say `retry-after: 2`,
so that the test waits seconds, not minutes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from extproc.config import load
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import PROVIDER_KEYS, Gateway, free_port, running_gateway
from tests.support.requests import chat, send

RETRY_AFTER_S = 2


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeOpenAI, FakeAnthropic, FakeAnthropic]]:
    openai = FakeOpenAI(
        expected_key=PROVIDER_KEYS["TEST_OPENAI_KEY"], retry_after=str(RETRY_AFTER_S)
    ).start()
    anthropic = FakeAnthropic(expected_key=PROVIDER_KEYS["TEST_ANTHROPIC_KEY"]).start()
    opus = FakeAnthropic(expected_key=PROVIDER_KEYS["TEST_ANTHROPIC_KEY"]).start()
    yield openai, anthropic, opus
    for fake in (openai, anthropic, opus):
        fake.stop()


@pytest.fixture(scope="module")
def gateway(fakes, tmp_path_factory) -> Iterator[Gateway]:
    openai, anthropic, opus = fakes

    def config_for(ports: dict[str, int]) -> str:
        return f"""\
listener: {{port: {ports["listener"]}, admin_port: {ports["admin"]}}}
sidecar: {{port: {ports["sidecar"]}, health_port: {ports["health"]}}}
llm_providers:
  - model: openai/gpt-4.1
    base_url: {openai.url}/v1
    provider_interface: openai-chat
    access_key: $TEST_OPENAI_KEY
    fallbacks: [anthropic/claude-haiku-4-5]
  - model: openai/o4-mini
    base_url: http://127.0.0.1:{free_port()}/v1
    provider_interface: openai-chat
    access_key: $TEST_OPENAI_KEY
    fallbacks: [anthropic/claude-haiku-4-5]
  - model: anthropic/claude-haiku-4-5
    base_url: {anthropic.url}
    access_key: $TEST_ANTHROPIC_KEY
    default: true
  - model: anthropic/claude-opus-4-1
    base_url: {opus.url}
    access_key: $TEST_ANTHROPIC_KEY
    fallbacks: [openai/gpt-4.1]
"""

    with running_gateway(config_for, tmp_path_factory.mktemp("cooldown")) as running:
        yield running


@pytest.fixture(autouse=True)
def clean(fakes) -> None:
    for fake in fakes:
        fake.received.clear()


def cooling_skips(gateway: Gateway) -> dict[str, float]:
    """The sidecar's count of requests that went past each provider while it rested."""
    health = load(gateway.config_path).sidecar.health_port
    text = httpx.get(f"http://127.0.0.1:{health}/metrics", timeout=5).text
    return {
        sample.labels["provider"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "extproc_cooling_skips"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def test_a_provider_rests_for_its_retry_after_then_gets_requests_again(gateway, fakes):
    openai, anthropic, _ = fakes
    limited = send(gateway, chat("openai/gpt-4.1", "RATELIMIT"))
    answered_at = time.monotonic()
    assert limited.status_code == 200, limited.text  # by the fallback, after the 429
    assert (len(openai.received), len(anthropic.received)) == (1, 1)

    # Within its rest (the sidecar started it before the client had the answer).
    resting = send(gateway, chat("openai/gpt-4.1", "hello while resting"))
    assert resting.status_code == 200, resting.text
    assert (len(openai.received), len(anthropic.received)) == (1, 2)
    assert anthropic.received[1].headers["x-api-key"] == PROVIDER_KEYS["TEST_ANTHROPIC_KEY"]
    entry = gateway.wait_log(lambda e: "cooling down" in (e.get("note") or ""))
    assert entry["requested_model"] == "openai/gpt-4.1"
    # The seconds left depend on how long the request took to arrive: 2 s or 1 s.
    assert entry["note"].startswith("openai/gpt-4.1 skipped: cooling down ")
    assert entry["note"].endswith(f" s after 429, retry-after {RETRY_AFTER_S} s")
    assert cooling_skips(gateway)["openai/gpt-4.1"] == 1

    time.sleep(max(0.0, answered_at + RETRY_AFTER_S + 0.2 - time.monotonic()))
    back = send(gateway, chat("openai/gpt-4.1", "hello again"))
    assert back.status_code == 200, back.text
    assert (len(openai.received), len(anthropic.received)) == (2, 2)
    assert "Hello from the OpenAI-format fake" in back.json()["content"][0]["text"]


def test_a_provider_that_refuses_connections_rests_too(gateway, fakes):
    """A refused connection counts against the provider (reported by the next attempt, which
    saw no answer of it): no retry-after, so the first rest is the backoff's 1 s, in which the
    next request comes."""
    _, anthropic, _ = fakes
    refused = send(gateway, chat("openai/o4-mini", "hello"))
    assert refused.status_code == 200, refused.text  # by the fallback
    assert len(anthropic.received) == 1
    resting = send(gateway, chat("openai/o4-mini", "hello while resting"))
    assert resting.status_code == 200, resting.text
    assert len(anthropic.received) == 2
    entry = gateway.wait_log(lambda e: (e.get("note") or "").startswith("openai/o4-mini"))
    assert entry["note"] == "openai/o4-mini skipped: cooling down 1 s after unseen"
    assert cooling_skips(gateway)["openai/o4-mini"] == 1


def test_a_native_heads_429_rests_it_for_its_retry_after(gateway, fakes):
    """opus heads its chain and speaks Anthropic's API: its answer goes past the sidecar, so
    its slot's Lua filter writes the 429 and its retry-after down for the next attempt, which
    tells the cooldown table; the next request routed to opus goes past it, and once the rest
    is over opus gets requests again."""
    _, _, opus = fakes
    opus.failure, opus.retry_after = "429", str(RETRY_AFTER_S)
    try:
        limited = send(gateway, chat("anthropic/claude-opus-4-1", "hello"))
    finally:
        opus.failure = None
    answered_at = time.monotonic()
    assert limited.status_code == 200, limited.text  # by a later candidate
    resting = send(gateway, chat("anthropic/claude-opus-4-1", "hello while resting"))
    assert resting.status_code == 200, resting.text
    assert len(opus.received) == 1
    entry = gateway.wait_log(
        lambda e: (e.get("note") or "").startswith("anthropic/claude-opus-4-1 skipped")
    )
    assert entry["note"].endswith(f" s after 429, retry-after {RETRY_AFTER_S} s")
    time.sleep(max(0.0, answered_at + RETRY_AFTER_S + 0.2 - time.monotonic()))
    back = send(gateway, chat("anthropic/claude-opus-4-1", "hello again"))
    assert back.status_code == 200, back.text
    assert len(opus.received) == 2


def test_a_resting_candidate_in_the_middle_of_a_chain_is_left_out_of_it(gateway, fakes):
    """opus → gpt-4.1 → haiku: with gpt-4.1 resting after a 429, the request goes out on the
    chain opus → haiku, so when opus fails haiku answers at once and gpt-4.1 is not called."""
    openai, anthropic, opus = fakes
    assert send(gateway, chat("openai/gpt-4.1", "RATELIMIT")).status_code == 200  # it rests
    opus.failure = "503"
    try:
        response = send(gateway, chat("anthropic/claude-opus-4-1", "hello"))
    finally:
        opus.failure = None
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == "Hello from the fake provider ✓"
    assert (len(opus.received), len(openai.received), len(anthropic.received)) == (1, 1, 2)
    entry = gateway.wait_log(
        lambda e: (
            e["requested_model"] == "anthropic/claude-opus-4-1"
            and e["upstream"] == "fo__anthropic_claude-haiku-4-5"
        )
    )
    assert entry["attempts"] == 2
