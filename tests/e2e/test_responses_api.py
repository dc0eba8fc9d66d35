"""OpenAI models on the Responses API, through real Envoy and the sidecar: the Anthropic SDK and
the real Claude Code CLI against the strict Responses fake."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import pytest

from extproc.translate import signatures
from tests.support.claude_code import CLAUDE_BIN, claude, decisions
from tests.support.fake_responses import FakeResponses
from tests.support.gateway import PROVIDER_KEYS, running_gateway
from tests.support.responses_streams import encrypted_for

CLIENT_KEY = "sk-ant-client-must-not-leak"


@pytest.fixture(scope="module")
def fake_responses() -> Iterator[FakeResponses]:
    fake = FakeResponses(expected_key=PROVIDER_KEYS["TEST_OPENAI_KEY"]).start()
    yield fake
    fake.stop()


@pytest.fixture
def responses_fake(fake_responses: FakeResponses, fake_anthropic) -> FakeResponses:
    """The Responses fake with its records cleared and its answers counted from 1 again."""
    fake_responses.received.clear()
    fake_responses.answered = 0
    fake_anthropic.received.clear()
    return fake_responses


@pytest.fixture(scope="module")
def responses_gateway(fake_responses, fake_anthropic, tmp_path_factory):
    """`openai/` models with no provider_interface: they speak Responses. The Codex model is the
    default, so Claude Code's requests for its own model names land on it."""

    def config_for(ports: dict[str, int]) -> str:
        return f"""\
listener: {{port: {ports["listener"]}, admin_port: {ports["admin"]}}}
sidecar: {{port: {ports["sidecar"]}, health_port: {ports["health"]}}}
llm_providers:
  - model: openai/gpt-5.2-codex
    base_url: {fake_responses.url}/v1
    access_key: $TEST_OPENAI_KEY
    default: true
  - model: openai/gpt-4.1
    base_url: {fake_responses.url}/v1
    access_key: $TEST_OPENAI_KEY
    max_tokens: 8192
  - model: anthropic/claude-sonnet-4-5
    base_url: {fake_anthropic.url}
  - model: anthropic/claude-haiku-4-5
    base_url: {fake_anthropic.url}
model_aliases:
  claude-*haiku*: anthropic/claude-haiku-4-5
"""

    with running_gateway(config_for, tmp_path_factory.mktemp("responses-gateway")) as gateway:
        yield gateway


def client(gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=CLIENT_KEY, max_retries=0, timeout=30)


def test_non_streamed_answer(responses_gateway, responses_fake):
    message = client(responses_gateway).messages.create(
        model="openai/gpt-4.1", max_tokens=64000, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text == "Hello from the Responses fake — ✓ 日本語"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (176, 1024)
    [seen] = responses_fake.received
    assert seen.path == "/v1/responses"
    sent = seen.json()
    assert sent["model"] == "gpt-4.1" and sent["store"] is False
    assert sent["max_output_tokens"] == 8192 and "max_tokens" not in sent
    assert seen.headers["authorization"] == f"Bearer {PROVIDER_KEYS['TEST_OPENAI_KEY']}"
    assert CLIENT_KEY not in json.dumps(seen.headers)
    entry = responses_gateway.wait_log(lambda e: e["request_id"] == seen.headers["x-request-id"])
    assert (entry["routed_model"], entry["input_tokens"], entry["output_tokens"]) == (
        "openai/gpt-4.1",
        176,
        42,
    )


def test_streamed_thinking_carries_the_encrypted_reasoning(responses_gateway, responses_fake):
    with client(responses_gateway).messages.stream(
        model="openai/gpt-5.2-codex",
        max_tokens=64000,
        thinking={"type": "enabled", "budget_tokens": 20000},
        messages=[{"role": "user", "content": "THINK"}],
    ) as events:
        message = events.get_final_message()
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "First, consider the question… 🤔"
    state = signatures.state(message.content[0].signature)
    assert (state["reasoning_id"], state["encrypted_content"]) == ("rs_0a1b2c", encrypted_for(1))
    assert message.content[1].text == "42"
    sent = responses_fake.received[0].json()
    assert sent["reasoning"] == {"effort": "high", "summary": "auto"}
    assert sent["include"] == ["reasoning.encrypted_content"] and sent["stream"] is True


@pytest.mark.parametrize(
    ("text", "error", "kind"),
    [
        ("RATELIMIT", anthropic.RateLimitError, "rate_limit_error"),
        ("BROKEN", anthropic.InternalServerError, "api_error"),
    ],
)
def test_http_errors_become_anthropic_errors(responses_gateway, responses_fake, text, error, kind):
    with pytest.raises(error) as raised:
        client(responses_gateway).messages.create(
            model="openai/gpt-4.1", max_tokens=100, messages=[{"role": "user", "content": text}]
        )
    assert raised.value.body["error"]["type"] == kind


def test_a_failed_response_mid_stream_is_an_error_event(responses_gateway, responses_fake):
    with (
        pytest.raises(anthropic.APIStatusError, match="The model failed mid-answer"),
        client(responses_gateway).messages.stream(
            model="openai/gpt-4.1", max_tokens=100, messages=[{"role": "user", "content": "FAIL"}]
        ) as events,
    ):
        events.get_final_message()


def test_openai_reasoning_goes_back_only_to_its_model(
    responses_gateway, responses_fake, fake_anthropic
):
    """A conversation that moves from a Responses model to Anthropic, or to another model,
    drops OpenAI's reasoning (they would refuse it), and one that moves back sends it again."""
    earlier = client(responses_gateway).messages.create(
        model="openai/gpt-5.2-codex",
        max_tokens=1000,
        thinking={"type": "enabled", "budget_tokens": 2000},
        messages=[{"role": "user", "content": "THINK"}],
    )
    history = [
        {"role": "user", "content": "THINK"},
        {
            "role": "assistant",
            "content": [b.model_dump(exclude_none=True) for b in earlier.content],
        },
        {"role": "user", "content": "and now?"},
    ]
    anthropic_client = anthropic.Anthropic(base_url=responses_gateway.url, api_key=CLIENT_KEY)
    anthropic_client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=history)
    [seen] = [r for r in fake_anthropic.received if r.method == "POST"]
    assert [b["type"] for b in seen.json()["messages"][1]["content"]] == ["text"]

    client(responses_gateway).messages.create(
        model="openai/gpt-5.2-codex", max_tokens=1000, messages=history
    )
    items = responses_fake.received[-1].json()["input"]
    assert items[1]["type"] == "reasoning" and items[1]["encrypted_content"] == encrypted_for(1)

    # Another model can't decrypt it: a turn routed to gpt-4.1 goes without it.
    client(responses_gateway).messages.create(
        model="openai/gpt-4.1", max_tokens=100, messages=history
    )
    assert [i["type"] for i in responses_fake.received[-1].json()["input"]] == ["message"] * 3


def test_claude_code_tool_loop_keeps_codex_reasoning(responses_gateway, responses_fake, tmp_path):
    """Claude Code, thinking on, runs a two-step tool loop on the Codex model; the second
    request carries the first answer's encrypted reasoning back."""
    if not (CLAUDE_BIN / "claude").exists():
        pytest.fail("Claude Code is not installed: run `npm ci` in the project root")
    result = claude(
        responses_gateway,
        tmp_path,
        "-p",
        "please TOOL echo something",
        "--allowedTools",
        "Bash(echo:*)",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "The tool said: hello ünïcode"

    first, second = (r.json() for r in responses_fake.received)
    assert first["model"] == second["model"] == "gpt-5.2-codex"
    assert first["reasoning"]["summary"] == "auto" and first["reasoning"]["effort"]
    assert first["include"] == ["reasoning.encrypted_content"] and first["store"] is False
    assert all(tool["strict"] is False for tool in first["tools"])
    reasoning, call, output = second["input"][-3:]
    assert reasoning == {
        "type": "reasoning",
        "id": "rs_0a1b2c",
        "summary": [{"type": "summary_text", "text": "**Choosing** a command to run."}],
        "encrypted_content": encrypted_for(1),
    }
    assert (call["type"], call["name"], call["call_id"]) == (
        "function_call",
        "Bash",
        "call_fake_bash_1",
    )
    assert output["type"] == "function_call_output" and "hello ünïcode" in output["output"]
    for entry in decisions(responses_gateway, responses_fake.received):
        assert entry["routed_model"] == "openai/gpt-5.2-codex"
