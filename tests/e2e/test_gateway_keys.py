"""gateway_keys: unknown callers get 401 before any routing; the key never leaves the gateway."""

from __future__ import annotations

import json

import httpx
import pytest

from extproc.config import ConfigError, parse
from tests.support.gateway import PROVIDER_KEYS, gateway_config, running_gateway

GATEWAY_KEY = "gk-team-0123456789abcdef"
OWN_KEY = "sk-ant-user-own-key"
"""A caller's own Anthropic key, sent beside the gateway key when Claude Code has both
ANTHROPIC_API_KEY and ANTHROPIC_AUTH_TOKEN set."""


@pytest.fixture(scope="module")
def keyed_gateway(fake_anthropic, fake_deepseek, fake_openai, tmp_path_factory):
    def config_for(ports: dict[str, int]) -> str:
        config = gateway_config(fake_anthropic, fake_deepseek, fake_openai, **ports)
        return config + "gateway_keys: [$TEST_GATEWAY_KEY]\n"

    with running_gateway(
        config_for, tmp_path_factory.mktemp("keyed"), env={"TEST_GATEWAY_KEY": GATEWAY_KEY}
    ) as gateway:
        yield gateway


def post(gateway, model: str, headers: dict[str, str]) -> httpx.Response:
    body = {"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{gateway.url}/v1/messages", json=body, headers=headers, timeout=10)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "sk-ant-someone-else"},
        {"authorization": "Bearer gk-team-0123456789abcdeX"},
        {"x-api-key": GATEWAY_KEY + "0"},
        {"x-api-key": OWN_KEY, "authorization": "Bearer gk-team-0123456789abcdeX"},
    ],
    ids=["none", "wrong x-api-key", "wrong bearer", "the key and one more character", "both wrong"],
)
def test_unknown_callers_get_401_before_any_upstream_call(keyed_gateway, fakes, headers):
    for path in ("/v1/messages", "/v1/models"):
        response = httpx.request(
            "POST" if path == "/v1/messages" else "GET",
            f"{keyed_gateway.url}{path}",
            json={"model": "deep", "messages": []},
            headers=headers,
        )
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
    assert not any(fake.received for fake in fakes)


@pytest.mark.parametrize(
    ("headers", "model", "fake_index"),
    [
        ({"x-api-key": GATEWAY_KEY}, "deep", 1),
        ({"authorization": f"Bearer {GATEWAY_KEY}"}, "claude-sonnet-4-5", 0),
        ({"x-api-key": GATEWAY_KEY}, "openai/gpt-4.1", 2),
        ({"authorization": f"bearer {GATEWAY_KEY}"}, "deep", 1),  # the scheme's case is free
        ({"x-api-key": OWN_KEY, "authorization": f"Bearer {GATEWAY_KEY}"}, "claude-sonnet-4-5", 0),
        ({"x-api-key": GATEWAY_KEY, "authorization": f"Bearer {OWN_KEY}"}, "openai/gpt-4.1", 2),
    ],
)
def test_key_holders_are_served_and_the_key_is_never_forwarded(
    keyed_gateway, fakes, headers, model, fake_index
):
    response = post(keyed_gateway, model, headers)
    assert response.status_code == 200, response.text
    [seen] = fakes[fake_index].received
    assert GATEWAY_KEY not in json.dumps(seen.headers)
    assert OWN_KEY not in json.dumps(seen.headers)
    credential = seen.headers.get("x-api-key") or seen.headers["authorization"].removeprefix(
        "Bearer "
    )
    assert credential in PROVIDER_KEYS.values(), "the provider's own key replaced it"


def test_anthropic_without_its_own_key_is_refused_not_sent_the_gateway_key(keyed_gateway, fakes):
    response = post(keyed_gateway, "anthropic/claude-opus-4-8", {"x-api-key": GATEWAY_KEY})
    assert response.status_code == 401
    assert "no access_key" in response.json()["error"]["message"]
    assert not fakes[0].received


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("[$NOT_SET_ANYWHERE]", "environment variable NOT_SET_ANYWHERE is not set"),
        ("[short]", "at least 16"),
    ],
)
def test_gateway_key_mistakes_are_config_errors(keys, message):
    with pytest.raises(ConfigError, match=message):
        parse(f"llm_providers:\n  - model: openai/x\ngateway_keys: {keys}\n")
