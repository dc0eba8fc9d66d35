"""What reaches the provider through the real gateway: no Anthropic headers on a translated
request, and its 429s and 500s counted by provider and status. The sidecar's side of each is
in tests/unit/proxy/test_upstream_headers.py."""

from __future__ import annotations

import re

import httpx

from extproc.config import load
from tests.support.requests import chat, get


def test_a_translated_request_reaches_the_provider_without_anthropic_headers(gateway, fakes):
    anthropic_fake, _, openai_fake = fakes
    headers = {"anthropic-version": "2023-06-01", "anthropic-beta": "context-1m-2025-08-07"}
    for model in ("openai/gpt-4.1", "claude-sonnet-4-5"):
        response = httpx.post(f"{gateway.url}/v1/messages", json=chat(model), headers=headers)
        assert response.status_code == 200
    [translated] = openai_fake.received
    assert not [name for name in translated.headers if name.startswith("anthropic-")]
    [native] = anthropic_fake.received
    assert {k: native.headers[k] for k in headers} == headers


def test_the_gateway_counts_a_providers_429_and_500(gateway, fakes):
    health = load(gateway.config_path).sidecar.health_port

    def counted() -> dict[tuple[str, str], float]:
        text = get(f"http://127.0.0.1:{health}/metrics")[1]
        pattern = r'extproc_upstream_errors_total\{provider="([^"]+)",status="(\d+)"\} (\S+)'
        return {(p, s): float(v) for p, s, v in re.findall(pattern, text)}

    before = counted()
    for model, text in [
        ("openai/gpt-4.1", "RATELIMIT"),
        ("openai/gpt-4.1", "BROKEN"),
        ("claude-sonnet-4-5", "FAULT-429"),
        ("claude-sonnet-4-5", "FAULT-500"),
    ]:
        httpx.post(f"{gateway.url}/v1/messages", json=chat(model, text))
    after = counted()
    grown = {key: after[key] - before.get(key, 0.0) for key in after}
    assert {key: n for key, n in grown.items() if n} == {
        ("openai/gpt-4.1", "429"): 1.0,
        ("openai/gpt-4.1", "500"): 1.0,
        ("anthropic/claude-sonnet-4-5", "429"): 1.0,
        ("anthropic/claude-sonnet-4-5", "500"): 1.0,
    }
