"""Anthropic clients against an OpenAI-format provider, through real Envoy and the sidecar."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from tests.support.captured import captured, wire_body
from tests.support.gateway import PROVIDER_KEYS

CLIENT_KEY = "sk-ant-client-must-not-leak"
TOOLS = [
    {
        "name": name,
        "description": f"{name} tool",
        "input_schema": {"type": "object", "properties": {arg: {"type": "string"}}},
    }
    for name, arg in (("run_command", "command"), ("get_weather", "city"), ("get_time", "tz"))
]


def client(gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=CLIENT_KEY, max_retries=0, timeout=30)


def stream(gateway, text: str, model: str = "openai/gpt-4.1", **extra) -> anthropic.types.Message:
    with client(gateway).messages.stream(
        model=model, max_tokens=64000, messages=[{"role": "user", "content": text}], **extra
    ) as events:
        return events.get_final_message()


def test_streamed_text_answer(gateway, fakes):
    *_, openai_fake = fakes
    message = stream(gateway, "say hello")
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Hello from the OpenAI-format fake — ✓ 日本語"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 17
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) == 120

    [seen] = openai_fake.received
    assert seen.path == "/v1/chat/completions"
    sent = seen.json()
    assert sent["model"] == "gpt-4.1"
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["max_completion_tokens"] == 8192, "clamped to the provider entry's max_tokens"
    assert seen.headers["authorization"] == f"Bearer {PROVIDER_KEYS['TEST_OPENAI_KEY']}"
    assert CLIENT_KEY not in json.dumps(seen.headers)
    assert "x-api-key" not in seen.headers and "anthropic-version" not in seen.headers
    assert seen.headers["accept-encoding"] == "identity"
    entry = gateway.wait_log(lambda e: e["request_id"] == seen.headers["x-request-id"])
    assert (entry["requested_model"], entry["routed_model"]) == ("openai/gpt-4.1", "openai/gpt-4.1")
    assert (entry["input_tokens"], entry["output_tokens"]) == (20, 17)


def test_non_streamed_answer(gateway, fakes):
    message = client(gateway).messages.create(
        model="openai/gpt-4.1", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text == "Hello from the OpenAI-format fake — ✓ 日本語"
    assert message.model == "openai/gpt-4.1", (
        "the model asked for (Claude Code keeps thinking then)"
    )
    assert message.usage.output_tokens == 17
    *_, openai_fake = fakes
    request_id = openai_fake.received[0].headers["x-request-id"]
    entry = gateway.wait_log(lambda e: e["request_id"] == request_id)
    assert (entry["input_tokens"], entry["output_tokens"]) == (20, 17)


def test_single_tool_call(gateway, fakes):
    message = stream(gateway, "TOOL please", tools=TOOLS[:1])
    assert [block.type for block in message.content] == ["text", "tool_use"]
    tool_use = message.content[1]
    assert (tool_use.name, tool_use.input) == ("run_command", {"command": "echo hello ünïcode"})
    assert message.stop_reason == "tool_use"


def test_two_parallel_tool_calls(gateway, fakes):
    message = stream(gateway, "PARALLEL calls", tools=TOOLS)
    calls = [(b.name, b.input) for b in message.content if b.type == "tool_use"]
    assert calls == [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]
    assert len({b.id for b in message.content if b.type == "tool_use"}) == 2


def test_thinking_answer(gateway, fakes):
    *_, openai_fake = fakes
    message = stream(
        gateway,
        "THINK hard",
        model="openai/o4-mini",
        thinking={"type": "enabled", "budget_tokens": 8000},
    )
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "First, consider the question… 🤔"
    assert message.content[1].text == "42"
    assert openai_fake.received[0].json()["reasoning_effort"] == "medium"


def test_two_step_tool_loop(gateway, fakes):
    messages = [{"role": "user", "content": "TOOL run echo"}]
    first = client(gateway).messages.create(
        model="openai/gpt-4.1", max_tokens=1000, tools=TOOLS[:1], messages=messages
    )
    tool_use = next(b for b in first.content if b.type == "tool_use")
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": tool_use.id, "content": "hello ünïcode"}
            ],
        },
    ]
    second = client(gateway).messages.create(
        model="openai/gpt-4.1", max_tokens=1000, tools=TOOLS[:1], messages=messages
    )
    assert second.content[0].text == "The tool said: hello ünïcode"
    *_, openai_fake = fakes
    tool_message = openai_fake.received[1].json()["messages"][-1]
    assert tool_message == {"role": "tool", "tool_call_id": tool_use.id, "content": "hello ünïcode"}


@pytest.mark.parametrize(
    ("text", "error", "status", "kind"),
    [
        ("RATELIMIT", anthropic.RateLimitError, 429, "rate_limit_error"),
        ("BROKEN", anthropic.InternalServerError, 500, "api_error"),
    ],
)
@pytest.mark.parametrize("streamed", [False, True])
def test_upstream_errors_become_anthropic_errors(
    gateway, fakes, text, error, status, kind, streamed
):
    with pytest.raises(error) as raised:
        if streamed:
            stream(gateway, text)
        else:
            client(gateway).messages.create(
                model="openai/gpt-4.1", max_tokens=10, messages=[{"role": "user", "content": text}]
            )
    assert raised.value.status_code == status
    assert raised.value.body["type"] == "error"
    assert raised.value.body["error"]["type"] == kind


@pytest.mark.parametrize("streamed", [False, True])
def test_a_long_mcp_tool_name_is_shortened_for_the_provider_and_restored(gateway, fakes, streamed):
    name = "mcp__chrome-devtools-extension__" + "take_a_full_page_screenshot_and_annotate" * 2
    tools = [{"name": name, "description": "screenshot", "input_schema": {"type": "object"}}]
    if streamed:
        message = stream(gateway, "TOOL please", tools=tools)
    else:
        message = client(gateway).messages.create(
            model="openai/gpt-4.1",
            max_tokens=100,
            tools=tools,
            messages=[{"role": "user", "content": "TOOL please"}],
        )
    assert [b.name for b in message.content if b.type == "tool_use"] == [name]
    *_, openai_fake = fakes
    sent = openai_fake.received[-1].json()["tools"][0]["function"]["name"]
    assert len(sent) == 64 and sent != name


def test_an_error_sent_with_200_reaches_the_client_with_its_own_status(gateway, fakes):
    """The SDK then raises (and would retry) instead of returning a message with no content."""
    with pytest.raises(anthropic.RateLimitError) as raised:
        client(gateway).messages.create(
            model="openai/gpt-4.1",
            max_tokens=10,
            messages=[{"role": "user", "content": "ERROR-IN-200"}],
        )
    assert raised.value.status_code == 429
    assert raised.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Quota exceeded for this minute."},
    }


@pytest.mark.parametrize("streamed", [False, True])
def test_gzip_answer_despite_identity_request(gateway, fakes, streamed):
    if streamed:
        message = stream(gateway, "GZIP hello")
    else:
        message = client(gateway).messages.create(
            model="openai/gpt-4.1", max_tokens=10, messages=[{"role": "user", "content": "GZIP hi"}]
        )
    assert message.content[0].text == "Hello from the OpenAI-format fake — ✓ 日本語"


def test_count_tokens_answered_locally(gateway, fakes):
    *_, openai_fake = fakes
    count = client(gateway).messages.count_tokens(
        model="openai/gpt-4.1", messages=[{"role": "user", "content": "x" * 400}]
    )
    assert count.input_tokens == 107  # the body's JSON, four characters a token
    with_system = client(gateway).messages.count_tokens(
        model="openai/gpt-4.1", system="y" * 4000, messages=[{"role": "user", "content": "x" * 400}]
    )
    assert with_system.input_tokens == 1108  # the whole body is counted, system included
    assert not openai_fake.received


def test_captured_claude_code_request_translates(gateway, fakes):
    *_, openai_fake = fakes
    request = captured("first-turn")
    body = {**request["body"], "model": "openai/gpt-4.1"}
    skip = {"host", "content-length", "connection"}
    headers = {k: v for k, v in request["headers"].items() if k.lower() not in skip}
    response = httpx.post(
        gateway.url + request["path"], content=wire_body(body), headers=headers, timeout=30
    )
    assert response.status_code == 200
    events = [line for line in response.text.splitlines() if line.startswith("event: ")]
    assert events[0] == "event: message_start" and events[-1] == "event: message_stop"
    sent = openai_fake.received[0].json()
    assert sent["messages"][0]["role"] == "system"
    assert all(m["role"] != "system" for m in sent["messages"][1:])
    assert "sk-ant-example-client-key" not in json.dumps(openai_fake.received[0].headers)


def test_thinking_from_an_openai_turn_is_dropped_before_anthropic(gateway, fakes):
    """A conversation that moves from an OpenAI-format model back to Anthropic keeps working."""
    anthropic_fake, *_ = fakes
    earlier = stream(
        gateway,
        "THINK hard",
        model="openai/o4-mini",
        thinking={"type": "enabled", "budget_tokens": 2000},
    )
    assert earlier.content[0].type == "thinking" and earlier.content[0].signature == ""
    history = [
        {"role": "user", "content": "THINK hard"},
        {
            "role": "assistant",
            "content": [b.model_dump(exclude_none=True) for b in earlier.content],
        },
        {"role": "user", "content": "and now?"},
    ]
    client(gateway).messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=history)
    [seen] = [r for r in anthropic_fake.received if r.method == "POST"]
    assert seen.json()["max_tokens"] == 10  # the rest of the body is kept
    sent = seen.json()["messages"][1]["content"]
    assert [block["type"] for block in sent] == ["text"]
    assert sent[0]["text"] == "42"


def test_tool_ids_fit_mistral(gateway, fakes):
    """Mistral takes only 9-character alphanumeric tool-call ids; Claude Code's are longer."""
    *_, openai_fake = fakes
    tool_id = "toolu_01A09q90qw90lq917835lq9"
    messages = [
        {"role": "user", "content": "TOOL run echo"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": tool_id,
                    "name": "run_command",
                    "input": {"command": "echo"},
                }
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "ok"}],
        },
    ]
    answer = client(gateway).messages.create(
        model="mistral/mistral-large-latest", max_tokens=100, tools=TOOLS[:1], messages=messages
    )
    assert answer.content[0].text == "The tool said: ok"
    sent = openai_fake.received[0].json()["messages"]
    call_id = sent[1]["tool_calls"][0]["id"]
    assert len(call_id) == 9 and call_id.isalnum()
    assert sent[2] == {"role": "tool", "tool_call_id": call_id, "content": "ok"}
