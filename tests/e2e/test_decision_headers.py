"""End to end: every answer carries the decision (x-extproc-model, -route, -source), added by
the real Envoy from the decision metadata, and nothing secret."""

from __future__ import annotations

import httpx
import pytest

from tests.support.gateway import PROVIDER_KEYS, free_port, running_gateway
from tests.support.requests import KEY, chat, send
from tests.support.tiny_model import ROUTES

DECISION = ("x-extproc-model", "x-extproc-route", "x-extproc-source")


def decision(response: httpx.Response) -> dict[str, str]:
    return {name: response.headers[name] for name in DECISION if name in response.headers}


def one_provider(ports: dict[str, int], base_url: str, listener: str = "") -> str:
    """A gateway whose one provider, Claude at `base_url`, is asked for by name."""
    return f"""\
listener: {{port: {ports["listener"]}, admin_port: {ports["admin"]}, {listener}}}
sidecar: {{port: {ports["sidecar"]}, health_port: {ports["health"]}}}
llm_providers:
  - {{model: anthropic/claude-sonnet-4-5, base_url: "{base_url}", access_key: $TEST_ANTHROPIC_KEY}}
"""


def assert_no_secret(response: httpx.Response, *upstreams: str) -> None:
    """No provider key and no provider address in any header of the answer."""
    headers = str(list(response.headers.multi_items()))
    for secret in (*PROVIDER_KEYS.values(), *upstreams):
        assert secret not in headers


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("deep", {"x-extproc-model": "deepseek/deepseek-chat", "x-extproc-source": "alias"}),
        ("openai/gpt-4.1", {"x-extproc-model": "openai/gpt-4.1", "x-extproc-source": "explicit"}),
    ],
    ids=["native", "translated"],
)
def test_answers_carry_the_decision_and_no_secret(gateway, fakes, model, expected, streamed):
    anthropic_fake, deepseek, openai_fake = fakes
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/messages",
        json=chat(model, stream=streamed),
        headers=KEY,
        timeout=20,
    ) as response:
        response.read()
    assert response.status_code == 200, response.text
    assert decision(response) == expected, "no route: the header is left out"
    assert_no_secret(response, anthropic_fake.url, deepseek.url, openai_fake.url)


def test_a_routers_decision_names_its_route(routed_gateway, fakes):
    response = send(routed_gateway, chat(text="write a python function that sorts a list"))
    assert response.status_code == 200, response.text
    route = response.headers["x-extproc-route"]
    assert route in dict(ROUTES), "the tiny model may choose any of its routes"
    model = (
        "deepseek/deepseek-chat" if route == "code_generation" else "anthropic/claude-sonnet-4-5"
    )
    assert decision(response) == {
        "x-extproc-model": model,
        "x-extproc-route": route,
        "x-extproc-source": "router",
    }


def test_the_sidecars_own_answers_carry_the_decision(gateway, fakes):
    counted = httpx.post(
        f"{gateway.url}/v1/messages/count_tokens",
        json=chat("openai/gpt-4.1"),
        headers=KEY,
        timeout=20,
    )
    assert counted.status_code == 200, counted.text
    assert decision(counted) == {
        "x-extproc-model": "openai/gpt-4.1",
        "x-extproc-source": "explicit",
    }
    malformed = httpx.post(f"{gateway.url}/v1/messages", content=b"{", headers=KEY, timeout=20)
    assert malformed.status_code == 400, malformed.text
    assert decision(malformed) == {"x-extproc-source": "rejected"}
    refused = send(gateway, chat("deepseek/deepseek-reasoner"))  # its key variable is unset
    assert refused.status_code == 401, refused.text
    assert decision(refused) == {
        "x-extproc-model": "deepseek/deepseek-reasoner",
        "x-extproc-source": "explicit",
    }


def test_envoys_own_reply_for_an_unreachable_provider_carries_the_decision(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"

    with running_gateway(lambda ports: one_provider(ports, closed), tmp_path) as gateway:
        response = send(gateway, chat())
    assert response.status_code == 503, response.text
    assert decision(response) == {
        "x-extproc-model": "anthropic/claude-sonnet-4-5",
        "x-extproc-source": "requested",
    }
    assert_no_secret(response, closed.removeprefix("http://"))


def test_no_decision_headers_when_the_operator_turns_them_off(tmp_path, fake_anthropic):
    def config_for(ports: dict[str, int]) -> str:
        return one_provider(ports, fake_anthropic.url, "decision_headers: false")

    with running_gateway(config_for, tmp_path) as gateway:
        response = send(gateway, chat())
    assert response.status_code == 200, response.text
    assert decision(response) == {}
