"""Through the real Envoy and sidecar: a request whose provider fails before answering is
served by the next candidate of its decision, translated for it, with its key alone.

Three chains (docs/reliability.md#failover):
- `claude-haiku-4-5` → `anthropic/claude-haiku-4-5` (native head, the client's own key
  passes through) → `openai/gpt-4.1` (translated) → the default;
- `openai/gpt-4.1` (translated head) → `anthropic/claude-opus-4-1` (native, its own key,
  a small window) → the default `anthropic/claude-sonnet-4-5` (its own key).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator

import httpx
import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_server import started
from tests.support.gateway import running_gateway
from tests.support.processes import sidecar_pid
from tests.support.requests import KEY, assert_anthropic_error, stream_in_background

OPENAI_KEY, OPUS_KEY, SONNET_KEY = "sk-openai-only", "sk-ant-opus-only", "sk-ant-sonnet-only"
CLIENT_KEY = KEY["x-api-key"]
OPENAI_TEXT = "Hello from the OpenAI-format fake — ✓ 日本語"
FAILOVER_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict]:
    with started(
        {
            "haiku": FakeAnthropic(answer="from haiku"),
            "openai": FakeOpenAI(expected_key=OPENAI_KEY),
            "opus": FakeAnthropic(expected_key=OPUS_KEY, window=3000, answer="from opus"),
            "sonnet": FakeAnthropic(expected_key=SONNET_KEY, answer="from sonnet"),
        }
    ) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(fakes, tmp_path_factory):
    def config_for(ports: dict[str, int]) -> str:
        return f"""\
listener:
  port: {ports["listener"]}
  admin_port: {ports["admin"]}
  failover_timeout_s: {FAILOVER_TIMEOUT_S}
  cooldown_max_s: 0  # each test fails providers anew: none may be resting from the last
sidecar: {{port: {ports["sidecar"]}, health_port: {ports["health"]}}}
llm_providers:
  - model: anthropic/claude-sonnet-4-5
    base_url: {fakes["sonnet"].url}
    access_key: $SONNET_KEY
    default: true
  - model: anthropic/claude-haiku-4-5
    base_url: {fakes["haiku"].url}
    fallbacks: [openai/gpt-4.1]
  - model: openai/gpt-4.1
    base_url: {fakes["openai"].url}/v1
    provider_interface: openai
    access_key: $OPENAI_KEY
    fallbacks: [anthropic/claude-opus-4-1]
  - model: anthropic/claude-opus-4-1
    base_url: {fakes["opus"].url}
    access_key: $OPUS_KEY
  - model: anthropic/claude-3-7-sonnet
    base_url: http://nowhere.invalid
    access_key: $OPUS_KEY
"""

    workdir = tmp_path_factory.mktemp("failover")
    env = {"OPENAI_KEY": OPENAI_KEY, "OPUS_KEY": OPUS_KEY, "SONNET_KEY": SONNET_KEY}
    with running_gateway(config_for, workdir, env=env) as running:
        yield running


@pytest.fixture(autouse=True)
def clean(fakes) -> Iterator[None]:
    yield
    for fake in fakes.values():
        if fake.failure is not None or not _listening(fake):
            fake.failure = None
            if not _listening(fake):
                fake.start()
        fake.received.clear()


def _listening(fake) -> bool:
    return fake.server.socket.fileno() >= 0


def fail(fake, how: str) -> None:
    if how == "refused":
        fake.refuse_connections()
    else:
        fake.failure = how


def send(
    gateway, model: str, streamed: bool, text: str = "hello", request_id: str = ""
) -> httpx.Response:
    body = {
        "model": model,
        "max_tokens": 64,
        "stream": streamed,
        "messages": [{"role": "user", "content": text}],
    }
    headers = {**KEY, **({"x-request-id": request_id} if request_id else {})}
    return httpx.post(f"{gateway.url}/v1/messages", json=body, headers=headers, timeout=60)


def answer_text(response: httpx.Response, streamed: bool) -> str:
    assert response.status_code == 200, response.text
    if not streamed:
        return "".join(block["text"] for block in response.json()["content"])
    assert "event: message_stop" in response.text
    events = [
        json.loads(line.removeprefix("data: "))
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]
    return "".join(
        e["delta"]["text"]
        for e in events
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "text_delta"
    )


FAILURES = [
    pytest.param("429", True, id="429-streamed"),
    pytest.param("429", False, id="429-whole"),
    pytest.param("503", True, id="503-streamed"),
    pytest.param("503", False, id="503-whole"),
    pytest.param("529", True, id="529-streamed"),
    pytest.param("refused", True, id="refused-streamed"),
    pytest.param("refused", False, id="refused-whole"),
    pytest.param("silent", True, id="silent-streamed"),
]


@pytest.mark.parametrize(("how", "streamed"), FAILURES)
def test_a_failing_native_head_is_served_by_the_translated_next_candidate(
    gateway, fakes, how, streamed
):
    fail(fakes["haiku"], how)
    response = send(gateway, "claude-haiku-4-5", streamed)
    assert OPENAI_TEXT in answer_text(response, streamed)
    [received] = fakes["openai"].received
    assert received.json()["model"] == "gpt-4.1"
    assert received.path == "/v1/chat/completions"
    # Only its own key: not the client's, which the head (passing it through) got.
    assert received.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert "x-api-key" not in received.headers
    assert CLIENT_KEY not in str(received.headers)
    if how != "refused":
        [head] = fakes["haiku"].received
        assert head.headers["x-api-key"] == CLIENT_KEY
    assert fakes["sonnet"].received == []


@pytest.mark.parametrize(("how", "streamed"), FAILURES)
def test_a_failing_translated_head_is_served_by_the_native_next_candidate(
    gateway, fakes, how, streamed
):
    fail(fakes["openai"], how)
    response = send(gateway, "openai/gpt-4.1", streamed)
    assert "from opus" in answer_text(response, streamed)
    [received] = fakes["opus"].received
    assert received.json()["model"] == "claude-opus-4-1"
    assert received.json()["messages"] == [{"role": "user", "content": "hello"}]
    assert received.path == "/v1/messages"
    assert received.headers["x-api-key"] == OPUS_KEY
    assert "authorization" not in received.headers
    assert OPENAI_KEY not in str(received.headers) and CLIENT_KEY not in str(received.headers)
    if how != "refused":
        [head] = fakes["openai"].received
        assert head.headers["authorization"] == f"Bearer {OPENAI_KEY}"


@pytest.mark.parametrize("streamed", [True, False])
def test_a_translated_head_that_answers_is_sent_its_translation_with_its_length(
    gateway, fakes, streamed
):
    """The downstream sidecar translates the head's request and sends it in the metadata; the
    head's Lua filter puts it in place of the client's body, which Envoy keeps for later
    candidates, with its content-length (not chunked); the answer comes back translated."""
    request_id = f"translated-head-{streamed}"
    response = send(gateway, "openai/gpt-4.1", streamed, request_id=request_id)
    assert OPENAI_TEXT in answer_text(response, streamed)
    [received] = fakes["openai"].received
    assert received.json()["model"] == "gpt-4.1"
    assert received.json()["messages"] == [{"role": "user", "content": "hello"}]
    assert received.headers["content-length"] == str(len(received.body))
    assert "transfer-encoding" not in received.headers
    assert received.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert "x-api-key" not in received.headers and "anthropic-version" not in received.headers
    assert fakes["opus"].received == [] and fakes["sonnet"].received == []
    assert "x-extproc-head-answer" not in response.headers
    line = gateway.wait_log(lambda entry: entry["client_request_id"] == request_id)
    assert (line["attempts"], line["provider"], line["upstream"], line["output_tokens"]) == (
        1,
        "openai/gpt-4.1",
        f"p__127_0_0_1_{fakes['openai'].port}",
        17,  # the answer's counts, read by the sidecar as it translated it
    )


def test_a_later_translated_candidate_is_sent_its_own_translation_with_its_length(gateway, fakes):
    """After a native head's 503, gpt-4.1's attempt translates the client's body (Envoy
    replays it as the client sent it) and sends it with its own content-length."""
    fail(fakes["haiku"], "503")
    response = send(gateway, "claude-haiku-4-5", False)
    assert OPENAI_TEXT in answer_text(response, False)
    [received] = fakes["openai"].received
    assert received.headers["content-length"] == str(len(received.body))
    assert "transfer-encoding" not in received.headers
    assert received.json()["model"] == "gpt-4.1"
    assert received.json()["messages"] == [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize("streamed", [True, False])
def test_a_provider_without_an_address_is_served_by_the_next_candidate(gateway, fakes, streamed):
    """Its DNS lookup fails: its slot has no host, the attempt fails at once on the fail-fast
    cluster, and the default answers."""
    response = send(gateway, "anthropic/claude-3-7-sonnet", streamed)
    assert "from sonnet" in answer_text(response, streamed)
    [served] = fakes["sonnet"].received
    assert served.headers["x-api-key"] == SONNET_KEY and OPUS_KEY not in str(served.headers)
    entry = gateway.wait_log(lambda e: e["requested_model"] == "anthropic/claude-3-7-sonnet")
    assert (entry["attempts"], entry["upstream"]) == (2, "fo__anthropic_claude-sonnet-4-5")


def test_a_context_too_long_400_moves_on_to_the_next_candidate(gateway, fakes):
    """Opus's fake refuses the prompt ("prompt is too long", Anthropic's 400); the sonnet
    after it takes it."""
    fail(fakes["openai"], "503")
    response = send(gateway, "openai/gpt-4.1", False, "lorem ipsum " * 2000)
    assert answer_text(response, False).startswith("from sonnet")
    [refused] = fakes["opus"].received
    assert refused.headers["x-api-key"] == OPUS_KEY
    [served] = fakes["sonnet"].received
    assert served.headers["x-api-key"] == SONNET_KEY
    assert OPUS_KEY not in str(served.headers) and OPENAI_KEY not in str(served.headers)
    attempt = gateway.wait_log(lambda e: e["status"] == 400, attempts=True)
    assert attempt["candidate"] == "fo__anthropic_claude-opus-4-1"
    assert attempt["failover"] == "context_too_long"


def test_an_anthropic_format_heads_context_too_long_400_moves_on_too(gateway, fakes):
    """haiku's answers go past the sidecar: the Lua filter on its chain slot reads its 400
    ("prompt is too long", Anthropic's), marks it for the retry and says why; gpt-4.1 after it
    takes the request. Not a failure of haiku's: it is not rested for it."""
    fakes["haiku"].window = 3000
    try:
        response = send(gateway, "claude-haiku-4-5", False, "lorem ipsum " * 2000)
    finally:
        fakes["haiku"].window = 0
    assert OPENAI_TEXT in answer_text(response, False)
    [refused] = fakes["haiku"].received
    assert refused.headers["x-api-key"] == CLIENT_KEY
    [served] = fakes["openai"].received
    assert served.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    slot = "p__127_0_0_1_" + fakes["haiku"].url.rsplit(":", 1)[1]
    attempt = gateway.wait_log(
        lambda e: (e["candidate"], e["status"]) == (slot, 400), attempts=True
    )
    assert (attempt["status"], attempt["failover"]) == (400, "context_too_long")
    assert "failover" not in response.headers and "x-extproc-failover" not in response.headers
    metrics = sidecar_metrics(gateway)
    counted = (
        'extproc_failovers_total{provider="anthropic/claude-haiku-4-5",reason="context_too_long"}'
    )
    assert f"{counted} 1.0" in metrics


def test_an_anthropic_format_heads_other_400_reaches_the_client(gateway, fakes):
    body = {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": []}
    response = httpx.post(f"{gateway.url}/v1/messages", json=body, headers=KEY, timeout=60)
    assert_anthropic_error(response, 400, "invalid_request_error")
    assert fakes["openai"].received == [] and fakes["sonnet"].received == []


def test_when_every_candidate_fails_the_client_gets_the_last_answer_and_a_retry_after(
    gateway, fakes
):
    for name in ("openai", "opus", "sonnet"):
        fail(fakes[name], "429")
    response = send(gateway, "openai/gpt-4.1", False)
    assert_anthropic_error(response, 429, "rate_limit_error")
    assert response.headers["retry-after"] == "7"
    assert [len(fakes[n].received) for n in ("openai", "opus", "sonnet")] == [1, 1, 1]


def test_when_the_last_candidate_is_unreachable_its_503_keeps_an_earlier_retry_after(
    gateway, fakes
):
    fail(fakes["openai"], "429")
    fail(fakes["opus"], "503")
    fail(fakes["sonnet"], "refused")
    response = send(gateway, "openai/gpt-4.1", False)
    assert_anthropic_error(response, 503, "api_error")
    assert response.headers["retry-after"] == fakes["openai"].retry_after  # the first's


def sidecar_metrics(gateway) -> str:
    health = gateway.config_path.read_text().split("health_port: ")[1].split("}")[0]
    return httpx.get(f"http://127.0.0.1:{health}/metrics").text


def test_failovers_are_counted_by_provider_and_reason(gateway, fakes):
    fail(fakes["openai"], "429")
    assert "from opus" in answer_text(send(gateway, "openai/gpt-4.1", False), False)
    metrics = sidecar_metrics(gateway)
    assert 'extproc_failovers_total{provider="openai/gpt-4.1",reason="429"}' in metrics


def test_a_native_stream_after_a_failover_outlives_a_killed_sidecar(gateway, fakes):
    fail(fakes["openai"], "503")
    thread, seen = stream_in_background(gateway, "openai/gpt-4.1", "PACE-250 MARK-native")
    assert seen["opened"].wait(20)
    os.kill(sidecar_pid(gateway), signal.SIGKILL)
    thread.join(30)
    assert "error" not in seen
    assert b"MARK-native" in seen["bytes"]
    assert seen["bytes"].rstrip().endswith(b'data: {"type": "message_stop"}')
