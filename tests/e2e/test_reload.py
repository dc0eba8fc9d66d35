"""Editing config.yaml while `extproc up` runs: applied to the next request, streams kept."""

from __future__ import annotations

import threading
import time

import anthropic
import httpx
import pytest

from extproc.config import load
from extproc.decisions.router.engine import ArchRouter
from extproc.decisions.routing import routes_of
from tests.support.conversations import conversations
from tests.support.gateway import routed_gateway_config, running_gateway


@pytest.fixture
def gateway(fake_anthropic, fake_deepseek, tiny_router_dir, tmp_path):
    with running_gateway(
        lambda ports: routed_gateway_config(
            fake_anthropic, fake_deepseek, tiny_router_dir, **ports
        ),
        tmp_path,
    ) as gw:
        yield gw


def edit(gateway, replacements: dict[str, str], expect: str) -> None:
    """Change config.yaml in one write and wait until `extproc up` reports `expect`."""
    before = len(gateway.output)
    text = gateway.config_path.read_text()
    for old, new in replacements.items():
        assert old in text
        text = text.replace(old, new, 1)
    gateway.config_path.write_text(text)
    deadline = time.monotonic() + 20
    while not any(expect in line for line in gateway.output[before:]):
        assert time.monotonic() < deadline, gateway.output[before:]
        time.sleep(0.1)


def test_edits_apply_to_the_next_request(gateway, fakes, tiny_router_dir):
    anthropic_fake, deepseek_fake, _ = fakes
    routes = routes_of(load(gateway.config_path))
    windows = conversations(24, seed=5)
    model = ArchRouter(tiny_router_dir)
    window = next(
        w
        for w, r in zip(windows, model.classify(routes, windows), strict=True)
        if r == "code_generation"
    )
    model.close()
    client = anthropic.Anthropic(base_url=gateway.url, api_key="sk-ant-user", max_retries=0)

    def ask() -> str:
        client.messages.create(model="claude-opus-4-8", max_tokens=5, messages=window)
        seen = (anthropic_fake.received + deepseek_fake.received)[-1]
        return gateway.wait_log(lambda e: e["request_id"] == seen.headers["x-request-id"])[
            "routed_model"
        ]

    assert ask() == "deepseek/deepseek-chat"

    # A model assignment change on the same origin: no new cluster, same routes.
    edit(gateway, {"deepseek/deepseek-chat": "deepseek/deepseek-reasoner"}, "models applied")
    assert ask() == "deepseek/deepseek-reasoner"

    # An invalid edit is reported and changes nothing.
    edit(gateway, {"default: true": "default: maybe"}, "the last good config stays in force")
    assert any("expected true or false" in line for line in gateway.output)
    assert ask() == "deepseek/deepseek-reasoner"


def test_new_cluster_hot_restarts_envoy_without_dropping_open_streams(gateway, fakes, fake_openai):
    anthropic_fake, *_ = fakes
    body = {
        "model": "anthropic/claude-haiku-4-5",
        "max_tokens": 50,
        "stream": True,
        # One event every 0.8 s: about 10 s of stream, for a hot restart of 1-3 s.
        "messages": [{"role": "user", "content": "PACE-800 answer please"}],
    }
    received: list[bytes] = []
    opened = threading.Event()

    def stream() -> None:
        with httpx.stream("POST", f"{gateway.url}/v1/messages", json=body, timeout=30) as response:
            for chunk in response.iter_raw():
                received.append(chunk)
                opened.set()

    streaming = threading.Thread(target=stream)
    streaming.start()
    assert opened.wait(10), "the stream did not open"
    openai_entry = (
        f"  - model: openai/gpt-4.1\n    base_url: {fake_openai.url}/v1\n"
        "    provider_interface: openai-chat\n    access_key: $TEST_OPENAI_KEY\nmodel_aliases:"
    )
    edit(gateway, {"model_aliases:": openai_entry}, "Envoy hot-restarted")
    assert streaming.is_alive(), "the stream ended before the restart: nothing was shown"
    streaming.join(30)
    assert b"".join(received) == b"".join(anthropic_fake.sent), "the open stream was cut"

    answer = anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0).messages.create(
        model="openai/gpt-4.1", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.content[0].text.startswith("Hello from the OpenAI-format fake")
