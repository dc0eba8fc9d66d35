"""Through the real Envoy: a request the chosen model can't take goes to the first of its
candidates that can, with that candidate's key alone, and the access log says why.

The providers are strict fakes that refuse what the real APIs refuse: DeepSeek's a prompt
over its 128k window (`context_length_exceeded`), Anthropic's one over Claude's 200k ("prompt
is too long"), and Ollama cuts one over its `num_ctx` without a word, as Ollama does.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_server import started
from tests.support.gateway import running_gateway
from tests.support.requests import KEY
from tests.support.strict_providers import PROFILES, FakeProvider, prompt_tokens

DEEPSEEK_KEY, GEMINI_KEY = "sk-deepseek-only", "sk-gemini-only"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()


def profile(name: str, **changes: object):
    return replace(next(p for p in PROFILES if p.name == name), **changes)


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeProvider]]:
    with started(
        {
            "deepseek": FakeProvider(
                profile=profile("deepseek/deepseek-reasoner", key=DEEPSEEK_KEY)
            ),
            "gemini": FakeProvider(profile=profile("gemini/gemini-3-pro-preview", key=GEMINI_KEY)),
            "ollama": FakeProvider(profile=profile("ollama/qwen3-coder", window=32_768)),
            "anthropic": FakeAnthropic(window=200_000),
        }
    ) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(fakes, tmp_path_factory):
    def config_for(ports: dict[str, int]) -> str:
        return f"""\
listener: {{port: {ports["listener"]}, admin_port: {ports["admin"]}}}
sidecar: {{port: {ports["sidecar"]}, health_port: {ports["health"]}}}
llm_providers:
  - model: deepseek/deepseek-reasoner
    base_url: {fakes["deepseek"].url}/v1
    provider_interface: openai
    access_key: $DEEPSEEK_KEY
    fallbacks: [gemini/gemini-3-pro-preview]
  - model: gemini/gemini-3-pro-preview
    base_url: {fakes["gemini"].url}/v1beta/openai
    access_key: $GEMINI_KEY
  - model: ollama/qwen3-coder
    base_url: {fakes["ollama"].url}
    context_window: 32768
    fallbacks: [gemini/gemini-3-pro-preview]
  - model: anthropic/claude-haiku-4-5
    base_url: {fakes["anthropic"].url}
    fallbacks: [gemini/gemini-3-pro-preview]
    default: true
"""

    workdir = tmp_path_factory.mktemp("candidates")
    env = {"DEEPSEEK_KEY": DEEPSEEK_KEY, "GEMINI_KEY": GEMINI_KEY}
    with running_gateway(config_for, workdir, env=env) as running:
        yield running


@pytest.fixture(autouse=True)
def clean(fakes) -> None:
    for fake in fakes.values():
        fake.received.clear()
    for name in ("deepseek", "gemini", "ollama"):
        fakes[name].refused.clear()
        fakes[name].cut.clear()


def send(gateway, model: str, *content: dict) -> httpx.Response:
    body = {
        "model": model,
        "max_tokens": 8192,
        "stream": True,
        "messages": [{"role": "user", "content": list(content)}],
    }
    return httpx.post(f"{gateway.url}/v1/messages", json=body, headers=KEY, timeout=30)


def text(words: int) -> dict:
    return {"type": "text", "text": "lorem ipsum dolor " * (words // 3)}


def served_by_gemini_alone(fakes, response: httpx.Response) -> dict:
    """The answer came from the Gemini fake, which got the one request, with its own key."""
    assert response.status_code == 200, response.text
    assert "event: message_stop" in response.text
    assert [fake.received for name, fake in fakes.items() if name != "gemini"] == [[], [], []]
    [received] = fakes["gemini"].received
    assert fakes["gemini"].refused == []
    assert received.headers["authorization"] == f"Bearer {GEMINI_KEY}"
    assert DEEPSEEK_KEY not in str(received.headers) and KEY["x-api-key"] not in str(
        received.headers
    )
    return received.json()


def test_a_long_request_routed_to_a_128k_model_is_served_by_its_fallback(gateway, fakes):
    long = text(100_000)
    # DeepSeek's fake would refuse it: over its window by its own count.
    assert prompt_tokens({"messages": [{"role": "user", "content": long["text"]}]}) > 131_072
    response = send(gateway, "deepseek/deepseek-reasoner", long)
    request = served_by_gemini_alone(fakes, response)
    assert request["model"] == "gemini-3-pro-preview"
    entry = gateway.wait_log(lambda e: e.get("routed_model") == "gemini/gemini-3-pro-preview")
    assert entry["requested_model"] == "deepseek/deepseek-reasoner"
    assert entry["note"].startswith("deepseek/deepseek-reasoner skipped: ~")
    assert entry["note"].endswith(" input tokens + 8k max_tokens > 128k window")


def test_an_image_turn_routed_to_a_text_only_model_goes_to_one_that_reads_images(gateway, fakes):
    picture = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
    }
    response = send(gateway, "deepseek/deepseek-reasoner", picture, text(9))
    request = served_by_gemini_alone(fakes, response)
    [part] = [p for p in request["messages"][-1]["content"] if p["type"] == "image_url"]
    assert part["image_url"]["url"] == f"data:image/png;base64,{PNG}"
    entry = gateway.wait_log(lambda e: "reads no images" in (e.get("note") or ""))
    assert entry["note"] == "deepseek/deepseek-reasoner skipped: reads no images"
    assert entry["routed_model"] == "gemini/gemini-3-pro-preview"


def test_a_request_too_long_for_claude_goes_to_its_fallback(gateway, fakes):
    long = text(150_000)
    # Anthropic's fake would answer "prompt is too long": over 200k by its own count.
    assert prompt_tokens({"messages": [{"role": "user", "content": long["text"]}]}) > 200_000
    served_by_gemini_alone(fakes, send(gateway, "claude-haiku-4-5", long))
    entry = gateway.wait_log(lambda e: (e.get("note") or "").startswith("anthropic/claude-haiku"))
    assert entry["note"].endswith(" input tokens + 8k max_tokens > 200k window")


def test_a_request_over_an_ollama_num_ctx_goes_to_the_fallback_not_cut(gateway, fakes):
    response = send(gateway, "ollama/qwen3-coder", text(40_000), text(9))
    served_by_gemini_alone(fakes, response)
    assert fakes["ollama"].cut == []


def test_a_request_that_fits_stays_where_it_was_routed(gateway, fakes):
    response = send(gateway, "deepseek/deepseek-reasoner", text(9))
    assert response.status_code == 200, response.text
    assert len(fakes["deepseek"].received) == 1 and fakes["gemini"].received == []
    assert fakes["deepseek"].received[0].headers["authorization"] == f"Bearer {DEEPSEEK_KEY}"
