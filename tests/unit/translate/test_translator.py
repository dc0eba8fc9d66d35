"""translator_for: one place picks the translator for a provider's interface, and the object
it returns carries the exchange both ways (request, whole answer, stream)."""

from __future__ import annotations

import orjson
import pytest

from extproc.translate import signatures
from extproc.translate.translator import translator_for

LONG_TOOL = "mcp__" + "x" * 80
BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "hi"}],
    "tools": [{"name": LONG_TOOL, "input_schema": {"type": "object", "properties": {}}}],
}


def test_openai_gets_chat_completions_both_ways() -> None:
    translator = translator_for("openai", BODY, upstream_model="gpt-4.1")
    sent = orjson.loads(translator.request(BODY))
    assert sent["model"] == "gpt-4.1"
    assert sent["messages"] == [{"role": "user", "content": "hi"}]
    assert "input" not in sent
    short = sent["tools"][0]["function"]["name"]
    call = {"id": "call_1", "type": "function", "function": {"name": short, "arguments": "{}"}}
    choice = {"message": {"role": "assistant", "tool_calls": [call]}, "finish_reason": "tool_calls"}
    answer = {"id": "x", "choices": [choice]}
    status, body = translator.response(200, orjson.dumps(answer))
    message = orjson.loads(body)
    assert status == 200
    assert message["model"] == "claude-sonnet-4-5"  # the client's name, not the provider's
    assert message["content"][0]["name"] == LONG_TOOL
    assert message["stop_reason"] == "tool_use"


def test_openai_responses_gets_the_responses_api_both_ways() -> None:
    translator = translator_for(
        "openai-responses", BODY, upstream_model="gpt-5.2-codex", base_url="https://a.example"
    )
    sent = orjson.loads(translator.request(BODY))
    assert sent["model"] == "gpt-5.2-codex"
    assert sent["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    ]
    assert "messages" not in sent
    output = [{"type": "message", "content": [{"type": "output_text", "text": "hello"}]}]
    status, body = translator.response(200, orjson.dumps({"id": "r", "output": output}))
    message = orjson.loads(body)
    assert (status, message["model"]) == (200, "claude-sonnet-4-5")
    assert message["content"] == [{"type": "text", "text": "hello"}]


def test_the_stream_translator_names_the_clients_model_and_estimates_input() -> None:
    translator = translator_for("openai", BODY, upstream_model="gpt-4.1")
    out = translator.stream().feed(b'data: {"id":"c","choices":[{"delta":{"content":"ok"}}]}\n\n')
    start = orjson.loads(out.split(b"\n")[1].removeprefix(b"data: "))
    assert start["message"]["model"] == "claude-sonnet-4-5"
    assert start["message"]["usage"]["input_tokens"] == translator.input_tokens_estimate > 1


def test_encrypted_reasoning_is_bound_to_the_provider_entry_and_its_key() -> None:
    """An answer's reasoning goes back to the entry and key that got it, and nowhere else:
    not to another base URL, not to another entry for the same model, and not with another
    key (two teams' entries for one model)."""
    team_a = {"upstream_model": "m", "entry": "team-a", "base_url": "https://a", "access_key": "ka"}
    reasoning = {"type": "reasoning", "id": "rs_1", "encrypted_content": "e", "summary": []}
    here = translator_for("openai-responses", BODY, **team_a)
    _, body = here.response(200, orjson.dumps({"id": "r", "output": [reasoning]}))
    thinking = orjson.loads(body)["content"][0]
    assert "ka" not in str(signatures.state(thinking["signature"]))
    history = {
        **BODY,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [thinking, {"type": "text", "text": "a"}]},
            {"role": "user", "content": "again"},
        ],
    }

    def sent_to(**where: str) -> list[str]:
        translator = translator_for("openai-responses", BODY, **{**team_a, **where})
        return [i["type"] for i in orjson.loads(translator.request(history))["input"]]

    assert sent_to() == ["message", "reasoning", "message", "message"]
    for elsewhere in ({"base_url": "https://b"}, {"entry": "team-b"}, {"access_key": "kb"}):
        assert sent_to(**elsewhere) == ["message", "message", "message"], elsewhere


def test_an_interface_without_a_translator_is_refused() -> None:
    with pytest.raises(ValueError, match="no translator for the 'anthropic' interface"):
        translator_for("anthropic", BODY, upstream_model="claude-sonnet-4-5")
