"""Limits: concurrency (Envoy's circuit breakers, a config setting) and memory bounds."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import gateway_config, running_gateway
from tests.test_bad_input import assert_anthropic_error, chat
from tests.test_faults import NATIVE, TRANSLATED, send, stream_in_background

LIMIT = 2


@pytest.fixture(scope="module")
def limited_gateway(fake_anthropic, fake_deepseek, fake_openai, tmp_path_factory):
    def config_for(ports: dict[str, int]) -> str:
        config = gateway_config(fake_anthropic, fake_deepseek, fake_openai, **ports)
        return config.replace("  log_tokens: true\n", f"  max_concurrent_requests: {LIMIT}\n")

    with running_gateway(config_for, tmp_path_factory.mktemp("limited")) as gateway:
        yield gateway


def test_provider_past_its_limit_answers_529_and_others_still_serve(limited_gateway, fakes):
    """LIMIT answers stream from one provider; of 3 × LIMIT more requests to it, at most
    LIMIT may wait for a connection (Envoy's pending requests), the rest are refused.
    Another provider is not affected."""
    held = [stream_in_background(limited_gateway, NATIVE, "PACE-300") for _ in range(LIMIT)]
    for _, seen in held:
        assert seen["opened"].wait(10)
    # Routed native answers hold no sidecar stream: the sidecar and other providers serve.
    assert send(limited_gateway, chat("deep")).status_code == 200
    with ThreadPoolExecutor(3 * LIMIT) as pool:
        extra = list(pool.map(lambda _: send(limited_gateway, chat(NATIVE)), range(3 * LIMIT)))
    refused = [r for r in extra if r.status_code != 200]
    assert len(refused) >= 2 * LIMIT
    for response in refused:
        message = assert_anthropic_error(response, 529, "overloaded_error")
        assert "gateway is at its concurrency limit" in message
        assert "listener.max_concurrent_requests" in message
    for thread, seen in held:
        thread.join(30)
        assert b"message_stop" in seen["bytes"]
    assert send(limited_gateway, chat(NATIVE)).status_code == 200


def test_sidecar_past_its_limit_answers_529(limited_gateway, fakes):
    """Translated answers hold a sidecar stream each: past LIMIT, nothing more is routed."""
    held = [stream_in_background(limited_gateway, TRANSLATED, "PACE-300") for _ in range(LIMIT)]
    for _, seen in held:
        assert seen["opened"].wait(10)
    message = assert_anthropic_error(send(limited_gateway, chat("deep")), 529, "overloaded_error")
    assert "gateway is at its concurrency limit" in message
    for thread, seen in held:
        thread.join(30)
        assert b"message_stop" in seen["bytes"]
    assert send(limited_gateway, chat("deep")).status_code == 200
