"""Provider contracts, sans-I/O: what today's models require of a translated request, and what
their answers carry that must come back (docs/translation.md#provider-contracts)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson
import pytest

from extproc.config import parse
from extproc.config.contract import COMMON, Contract, contract_for
from extproc.translate import TranslationError, signatures
from extproc.translate.openai_chat import translate_request, translate_response
from extproc.translate.openai_chat.request import GEMINI_SIGNATURE_PLACEHOLDER
from extproc.translate.openai_format import provider_tool_name, tool_names
from extproc.translate.openai_responses import translate_request as responses_request
from extproc.translate.response import ResponseTranslation
from extproc.translate.translator import ChatTranslator, translator_for
from tests.support.anthropic_sse import accumulate, events
from tests.support.anthropic_sse import translate as stream
from tests.support.exception_text import error_text
from tests.support.openai_streams import RECORDED

MCP_NAME = "mcp__claude-in-chrome-extension__" + "computer_screenshot_with_annotations" * 2


def request(body: dict[str, Any], contract: Contract = COMMON, **kwargs: Any) -> dict[str, Any]:
    return orjson.loads(translate_request(body, model="m", contract=contract, **kwargs))


def turn(*content: dict[str, Any], role: str = "user") -> dict[str, Any]:
    return {"role": role, "content": list(content)}


def tool_use(tool_id: str, name: str = "Bash", **extra: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": {"command": "ls"}, **extra}


def tool_result(tool_id: str, content: Any = "ok") -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": content}


@pytest.mark.parametrize(
    ("kind", "model", "field", "reasoning"),
    [
        ("openai", "gpt-5.2", "max_completion_tokens", True),
        ("openai", "gpt-5-codex", "max_completion_tokens", True),
        ("openai", "o4-mini", "max_completion_tokens", True),
        ("openai", "o3", "max_completion_tokens", True),
        ("openai", "gpt-5-chat-latest", "max_completion_tokens", False),
        ("openai", "gpt-4.1", "max_completion_tokens", False),
        ("gemini", "gemini-3-pro-preview", "max_tokens", True),
        ("xai", "grok-4", "max_tokens", False),
        ("groq", "llama-3.3-70b-versatile", "max_tokens", False),
    ],
)
def test_token_field_and_reasoning_per_family(kind, model, field, reasoning) -> None:
    contract = contract_for(kind, model)
    assert (contract.token_field, contract.reasoning) == (field, reasoning)
    body = {"model": "x", "max_tokens": 64000, "messages": [turn({"type": "text", "text": "hi"})]}
    out = request({**body, "thinking": {"type": "adaptive"}}, contract, max_tokens_cap=32000)
    assert out[field] == 32000
    assert not ({"max_tokens", "max_completion_tokens"} - {field}) & set(out)
    assert ("reasoning_effort" in out) is reasoning


OPENAI = {"token_field": "max_completion_tokens", "prompt_cache_key": True, "file_parts": True}
OPENAI_REASONING = {**OPENAI, "reasoning": True, "stop": False}


@pytest.mark.parametrize(
    ("kind", "model", "rules"),
    [
        # Each row of docs/translation.md's built-in table, for every glob it names, and the
        # models just outside them.
        ("openai", "gpt-4.1", OPENAI),
        ("openai", "o1", OPENAI_REASONING),
        ("openai", "o4-mini", OPENAI_REASONING),
        ("openai", "gpt-5", OPENAI_REASONING),
        ("openai", "gpt-5-codex", OPENAI_REASONING),
        ("openai", "gpt-5.1", OPENAI_REASONING),
        ("openai", "gpt-5.2", {**OPENAI_REASONING, "tools_effort": "drop"}),
        ("openai", "gpt-5.5-pro", {**OPENAI_REASONING, "tools_effort": "drop"}),
        ("openai", "gpt-5.6", {**OPENAI_REASONING, "tools_effort": "none"}),
        ("openai", "gpt-5.9-mini", {**OPENAI_REASONING, "tools_effort": "none"}),
        ("openai", "gpt-5-chat-latest", OPENAI),
        ("openai", "gpt-5.6-chat-latest", OPENAI),
        ("openrouter", "openai/gpt-5.2", {"file_parts": True}),
        (
            "gemini",
            "gemini-2.5-pro",
            {"reasoning": True, "context_window": 1_048_576, "output_cap": 65_535},
        ),
        ("gemini", "gemini-2.5-flash", {"reasoning": True}),
        (
            "gemini",
            "gemini-3-pro-preview",
            {
                "reasoning": True,
                "thought_signatures": True,
                "context_window": 1_048_576,
                "output_cap": 65_536,
            },
        ),
        ("gemini", "gemini-3-flash-preview", {"reasoning": True, "thought_signatures": True}),
        ("gemini", "gemini-flash-latest", {"reasoning": True, "thought_signatures": True}),
        ("gemini", "gemini-2.0-flash", {}),
        ("xai", "grok-3-mini-fast", {"reasoning": True, "reasoning_levels": "low,high"}),
        ("xai", "grok-3", {}),
        ("xai", "grok-4-fast-reasoning", {"stop": False}),
        (
            "groq",
            "openai/gpt-oss-120b",
            {"reasoning": True, "images": False, "context_window": 131_072, "pdfs": False},
        ),
        ("groq", "llama-3.3-70b-versatile", {}),
        (
            "mistral",
            "mistral-large-latest",
            {"short_tool_ids": True, "stream_options": False, "user_field": False},
        ),
        (
            "deepseek",
            "deepseek-chat",
            {"images": False, "pdfs": False, "context_window": 128_000, "output_cap": 8_000},
        ),
        (
            "deepseek",
            "deepseek-reasoner",
            {
                "images": False,
                "pdfs": False,
                "reasoning_echo": True,
                "context_window": 128_000,
                "output_cap": 64_000,
            },
        ),
        ("deepseek", "deepseek-v4-pro", {"images": False, "pdfs": False, "reasoning_echo": True}),
        ("moonshot", "kimi-k2-thinking-turbo", {"reasoning_echo": True, "images": False}),
        ("moonshot", "kimi-k2.5", {"reasoning_echo": True}),
        ("moonshot", "kimi-k2-0905-preview", {}),
        (
            "anthropic",
            "claude-sonnet-4-5-20250929",
            {"context_window": 200_000, "output_cap": 64_000},
        ),
        ("anthropic", "claude-opus-4-5", {"context_window": 200_000, "output_cap": 64_000}),
        ("anthropic", "claude-haiku-4-5", {"context_window": 200_000, "output_cap": 64_000}),
        ("anthropic", "claude-opus-4-1", {}),
        ("ollama", "gpt-5", {}),
        ("vllm", "deepseek-reasoner", {}),
    ],
)
def test_every_built_in_row_applies_to_each_model_it_names(kind, model, rules) -> None:
    assert contract_for(kind, model) == Contract(**rules)


def test_user_rows_come_after_the_built_in_rows_and_a_provider_entry_has_the_last_word() -> None:
    config = parse(
        """
llm_providers:
  - model: openai/gpt-5.2
  - model: openai/gpt-5.2-mini
  - model: openai/o3
    reasoning: true
  - model: deepseek/deepseek-chat
model_families:
  - {provider: openai, model: "gpt-5.2*", tools_effort: none, stop: true}
  - {provider: openai, model: "*", reasoning: false}
  - {provider: openai, model: "*-mini", reasoning: true}
  - {model: "deepseek-*", images: true}
"""
    )
    gpt52, gpt52_mini, o3, deepseek = (p.contract for p in config.providers)
    assert gpt52 == Contract(**OPENAI, tools_effort="none")
    assert gpt52_mini == Contract(**{**OPENAI_REASONING, "tools_effort": "none", "stop": True})
    assert o3 == Contract(**OPENAI_REASONING)
    assert deepseek == Contract(pdfs=False, context_window=128_000, output_cap=8_000)


@pytest.mark.parametrize(
    ("kind", "model"),
    [
        ("deepseek", "deepseek-reasoner"),
        ("deepseek", "deepseek-v4-pro"),
        ("moonshot", "kimi-k2-thinking"),
        ("moonshot", "kimi-k2.5"),
    ],
)
def test_thinking_modes_that_want_their_reasoning_back(kind, model) -> None:
    assert contract_for(kind, model).reasoning_echo
    assert not contract_for("openrouter", f"x/{model}").reasoning_echo  # see Known limits


def test_newer_gpt5_models_take_no_effort_beside_function_tools() -> None:
    thinking = {"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}}
    body = {"messages": [turn({"type": "text", "text": "x"})], **thinking}
    tools = {"tools": [{"name": "Bash", "input_schema": {"type": "object"}}]}
    gpt52, gpt56 = contract_for("openai", "gpt-5.2"), contract_for("openai", "gpt-5.6")
    assert request(body, gpt52)["reasoning_effort"] == "high"
    assert "reasoning_effort" not in request({**body, **tools}, gpt52)
    assert request({**body, **tools}, gpt56)["reasoning_effort"] == "none"
    assert request({**body, **tools}, contract_for("openai", "gpt-5"))["reasoning_effort"] == "high"


def test_an_effort_the_model_lacks_becomes_the_next_one_up() -> None:
    body = {"messages": [turn({"type": "text", "text": "x"})], "thinking": {"type": "adaptive"}}
    assert request(body, contract_for("xai", "grok-3-mini"))["reasoning_effort"] == "high"
    assert request(body, contract_for("gemini", "gemini-3-pro"))["reasoning_effort"] == "medium"


def test_stop_sequences_only_where_the_model_takes_them() -> None:
    body = {"messages": [turn({"type": "text", "text": "x"})], "stop_sequences": ["END"]}
    assert request(body, contract_for("openai", "gpt-4.1"))["stop"] == ["END"]
    for kind, model in (("openai", "gpt-5.2"), ("openai", "o3"), ("xai", "grok-4")):
        assert "stop" not in request(body, contract_for(kind, model)), model


def test_text_only_models_get_image_placeholders() -> None:
    img = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}
    history = [turn(tool_result("t", [img]), img, {"type": "text", "text": "look"})]
    messages = request({"messages": history}, contract_for("deepseek", "deepseek-v4-pro"))
    assert messages["messages"] == [
        {"role": "tool", "tool_call_id": "t", "content": "[image]"},
        {"role": "user", "content": "[image]\n\nlook"},
    ]


def test_a_signature_after_its_call_closed_is_still_sent() -> None:
    def chunk(call: dict[str, Any]) -> bytes:
        return (
            b"data: "
            + orjson.dumps({"id": "s", "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})
            + b"\n\n"
        )

    fn = {"name": "Bash", "arguments": '{"command":"ls"}'}
    late = {"index": 0, "extra_content": {"google": {"thought_signature": "late=="}}}
    chunks = chunk({"index": 0, "id": "a", "function": fn}) + chunk(
        {"index": 1, "id": "b", "function": fn}
    )
    message = accumulate(stream(chunks + chunk(late) + b"data: [DONE]\n\n"))
    signed = [b for b in message.content if b.type == "thinking"]
    assert [signatures.state(b.signature) for b in signed] == [
        {"tool_use_id": "a", "thought_signature": "late=="}
    ]


def test_odd_server_tool_names_are_no_crash() -> None:
    body = {
        "messages": [turn({"type": "text", "text": "x"})],
        "tools": [{"type": "web_search_20250305", "name": ["x"]}],
    }
    assert tool_names(body, COMMON) == {}
    assert "tools" not in request(body)


def test_users_extend_the_table_in_config_and_a_provider_entry_overrides() -> None:
    config = parse(
        """
llm_providers:
  - model: openai/gpt-7-preview
  - model: moonshot/kimi-k2-thinking
  - model: acme/thinker-2
    base_url: http://127.0.0.1:9/v1
    provider_interface: openai
    reasoning: true
model_families:
  - {provider: acme, model: "thinker-*", reasoning_echo: true, tool_name_max: 40}
"""
    )
    openai, kimi, acme = (p.contract for p in config.providers)
    assert openai.token_field == "max_completion_tokens" and not openai.reasoning
    assert kimi.reasoning_echo
    assert (acme.reasoning_echo, acme.tool_name_max, acme.reasoning) == (True, 40, True)


def test_a_model_family_row_is_validated() -> None:
    with pytest.raises(Exception) as raised:
        parse(
            "llm_providers: [{model: openai/x}]\n"
            "model_families: [{model: x, token_field: max_toks, reasoning: maybe, colour: red,"
            " tool_name_max: 8}]\n"
        )
    text = str(raised.value)
    assert "model_families[0].tool_name_max: must be between 16 and 128" in text
    assert "model_families[0].token_field" in text and "model_families[0].colour" in text
    assert "model_families[0].reasoning: expected true or false" in text


# -- Gemini 3 thought signatures ---------------------------------------------------------------

GEMINI3 = contract_for("gemini", "gemini-3-pro-preview")


def test_thought_signature_travels_in_a_thinking_block_and_comes_back() -> None:
    message = accumulate(stream(RECORDED["gemini3-signature"]))
    blocks = [b.model_dump() for b in message.content]
    assert [b["type"] for b in blocks] == ["thinking", "tool_use", "tool_use"]
    assert blocks[0]["thinking"] == ""  # nothing for the user to read
    assert signatures.state(blocks[0]["signature"]) == {
        "tool_use_id": "fc_a",
        "thought_signature": "CiQBcsjafT+sig/A==",
    }
    # Claude Code sends the content back unchanged; the calls regain their signatures.
    history = [
        turn({"type": "text", "text": "list files"}),
        turn(*blocks, role="assistant"),
        turn(tool_result("fc_a"), tool_result("fc_b")),
    ]
    out = request({"messages": history}, GEMINI3)
    calls = out["messages"][1]["tool_calls"]
    assert calls[0]["extra_content"] == {"google": {"thought_signature": "CiQBcsjafT+sig/A=="}}
    assert "extra_content" not in calls[1]  # Gemini signs only the first call of a step
    assert all(m["role"] != "assistant" or "reasoning_content" not in m for m in out["messages"])


def test_non_streamed_thought_signature_matches_the_streamed_one() -> None:
    answer = {
        "id": "g3",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "fc_a",
                            "type": "function",
                            "function": {"name": "Bash", "arguments": '{"command":"ls"}'},
                            "extra_content": {
                                "google": {"thought_signature": "CiQBcsjafT+sig/A=="}
                            },
                        }
                    ],
                },
            }
        ],
    }
    _, body = translate_response(200, orjson.dumps(answer), model="g")
    first = orjson.loads(body)["content"][0]
    streamed = accumulate(stream(RECORDED["gemini3-signature"]))
    assert first == streamed.content[0].model_dump()


@pytest.mark.parametrize("signature", [12345, {"data": "CiQB"}, ["CiQB"], True])
def test_a_thought_signature_that_is_no_string_is_not_kept(signature: Any) -> None:
    call = {
        "id": "fc_a",
        "type": "function",
        "function": {"name": "Bash", "arguments": '{"command":"ls"}'},
        "extra_content": {"google": {"thought_signature": signature}},
    }
    message = {"role": "assistant", "tool_calls": [call]}
    answer = {
        "id": "g3",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": message}],
    }
    _, body = translate_response(200, orjson.dumps(answer), model="g")
    assert [b["type"] for b in orjson.loads(body)["content"]] == ["tool_use"]
    chunk = {"id": "g3", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, **call}]}}]}
    streamed = accumulate(stream(b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n"))
    assert [b.type for b in streamed.content] == ["tool_use"]


def test_history_gemini_did_not_write_gets_the_documented_placeholder() -> None:
    history = [
        turn({"type": "text", "text": "go"}),
        turn(tool_use("toolu_1"), tool_use("toolu_2"), role="assistant"),
        turn(tool_result("toolu_1"), tool_result("toolu_2")),
    ]
    calls = request({"messages": history}, GEMINI3)["messages"][1]["tool_calls"]
    assert calls[0]["extra_content"]["google"]["thought_signature"] == GEMINI_SIGNATURE_PLACEHOLDER
    assert "extra_content" not in calls[1]
    assert "extra_content" not in request({"messages": history})["messages"][1]["tool_calls"][0]


def test_a_signature_with_a_non_string_thought_signature_is_ignored() -> None:
    altered = signatures.sign({"tool_use_id": "toolu_1", "thought_signature": 7})
    history = [
        turn({"type": "text", "text": "go"}),
        turn(
            {"type": "thinking", "thinking": "", "signature": altered},
            tool_use("toolu_1"),
            role="assistant",
        ),
        turn(tool_result("toolu_1")),
    ]
    calls = request({"messages": history}, GEMINI3)["messages"][1]["tool_calls"]
    assert calls[0]["extra_content"] == {
        "google": {"thought_signature": GEMINI_SIGNATURE_PLACEHOLDER}
    }


def test_signatures_never_reach_anthropic_and_foreign_ones_are_ignored() -> None:
    from extproc.proxy.exchange import without_foreign_thinking

    ours = {"type": "thinking", "thinking": "", "signature": signatures.sign({"a": 1})}
    anthropics = {"type": "thinking", "thinking": "t", "signature": "EqQBCkYIBxgCKkB+/="}
    body = {"messages": [turn(ours, anthropics, {"type": "text", "text": "x"}, role="assistant")]}
    cleaned = without_foreign_thinking(body)
    assert cleaned is not None
    assert cleaned["messages"][0]["content"] == [anthropics, {"type": "text", "text": "x"}]
    assert signatures.state(anthropics["signature"]) == {}
    assert signatures.state(signatures.PREFIX + "not base64 !") == {}
    # Ours in form, but not an object inside: altered, so nothing of it is used.
    assert signatures.state(signatures.PREFIX + "WzEsMl0=") == {}  # [1,2]
    assert signatures.state(signatures.sign({"a": 1})) == {"a": 1}


# -- DeepSeek and Kimi thinking modes ----------------------------------------------------------


def test_thinking_comes_back_as_reasoning_content_on_tool_call_turns() -> None:
    contract = contract_for("moonshot", "kimi-k2-thinking")
    history = [
        turn({"type": "text", "text": "go"}),
        turn(
            {"type": "thinking", "thinking": "", "signature": ""},
            {"type": "thinking", "thinking": "I should list.", "signature": ""},
            {"type": "thinking", "thinking": "Then read.", "signature": ""},
            tool_use("call_1"),
            role="assistant",
        ),
        turn(tool_result("call_1")),
        turn({"type": "text", "text": "Done."}, role="assistant"),
        turn({"type": "text", "text": "thanks"}),
    ]
    messages = request({"messages": history}, contract)["messages"]
    assert messages[1]["reasoning_content"] == "I should list.\n\nThen read."
    assert "reasoning_content" not in messages[3]  # no tool calls: nothing required
    # A tool-call turn another provider wrote has no thinking: the field is still there.
    history[1] = turn(tool_use("call_1"), role="assistant")
    assert request({"messages": history}, contract)["messages"][1]["reasoning_content"] == ""
    # Providers without the rule never see the field (Groq refuses it).
    assert "reasoning_content" not in request({"messages": history})["messages"][1]


# -- Ollama's parallel calls at one index ------------------------------------------------------


def test_a_new_id_at_a_used_index_is_a_new_call() -> None:
    message = accumulate(stream(RECORDED["ollama-index-reuse"]))
    assert [(b.type, b.id, b.name, b.input) for b in message.content] == [
        ("tool_use", "call_x1", "Bash", {"command": "pwd"}),
        ("tool_use", "call_x2", "Read", {"file_path": "/d"}),
    ]
    assert message.stop_reason == "tool_use"


def test_an_id_that_changes_between_chunks_of_one_call_is_not_a_new_call() -> None:
    message = accumulate(stream(RECORDED["id-changes-mid-call"]))
    assert [(b.id, b.name, b.input) for b in message.content] == [
        ("c_A", "Bash", {"command": "ls"})
    ]


def test_fragments_without_id_still_continue_their_call() -> None:
    chunks = (
        b'data: {"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a",'
        b'"function":{"name":"Bash","arguments":"{\\"command\\":"}}]}}]}\n\n'
        b'data: {"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,'
        b'"function":{"arguments":"\\"ls\\"}"}}]}}]}\n\n'
        b'data: {"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a",'
        b'"function":{"arguments":""}}]},"finish_reason":"tool_calls"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    message = accumulate(stream(chunks))
    assert [(b.id, b.input) for b in message.content] == [("a", {"command": "ls"})]


# -- Tool names over 64 characters -------------------------------------------------------------


def digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:8]


def test_long_tool_names_are_shortened_for_the_provider_and_restored() -> None:
    short = provider_tool_name(MCP_NAME, 64)
    assert len(short) == 64 and short == provider_tool_name(MCP_NAME, 64)
    assert provider_tool_name("Bash", 64) == "Bash"
    # The cleaned name cut to leave room for "_" and 8 hex of the whole name's SHA-256.
    assert short == MCP_NAME[:55] + "_" + digest(MCP_NAME)
    assert provider_tool_name("mcp__a.b c", 64) == "mcp__a_b_c_" + digest("mcp__a.b c")
    assert provider_tool_name("x" * 41, 40) == "x" * 31 + "_" + digest("x" * 41)
    assert provider_tool_name("x" * 40, 40) == "x" * 40
    tool = {"name": MCP_NAME, "input_schema": {"type": "object"}}
    history = [
        turn({"type": "text", "text": "shot"}),
        turn(tool_use("call_1", MCP_NAME), role="assistant"),
        turn(tool_result("call_1")),
    ]
    body = {"messages": history, "tools": [tool], "tool_choice": {"type": "tool", "name": MCP_NAME}}
    out = request(body)
    assert out["tools"][0]["function"]["name"] == short
    assert out["messages"][1]["tool_calls"][0]["function"]["name"] == short
    assert out["tool_choice"] == {"type": "function", "function": {"name": short}}
    names = tool_names(body, COMMON)
    assert names == {short: MCP_NAME}
    # A tool no longer offered still maps back: the provider sees it in the history.
    bash = {"name": "Bash", "input_schema": {"type": "object"}}
    assert tool_names({"messages": history, "tools": [bash]}, COMMON) == {short: MCP_NAME}

    call = {"id": "c9", "type": "function", "function": {"name": short, "arguments": "{}"}}
    answer = {"id": "x", "choices": [{"index": 0, "message": {"tool_calls": [call]}}]}
    _, translated = translate_response(200, orjson.dumps(answer), model="m", tool_names=names)
    assert orjson.loads(translated)["content"][0]["name"] == MCP_NAME
    chunk = {"id": "x", "choices": [{"index": 0, "delta": {"tool_calls": [{**call, "index": 0}]}}]}
    chunks = b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n"
    message = accumulate(stream(chunks, tool_names=names))
    assert message.content[0].name == MCP_NAME


STEM = "mcp__srv__" + "t" * 60
DIGEST_TWINS = (f"{STEM}_36484", f"{STEM}_102351")
"""Two long names whose shortened forms agree: the same 55-character prefix and the same 8 hex
of SHA-256. Found by brute force with the rule itself: provider_tool_name(f"{STEM}_{i}", 64)
for i = 0, 1, ... until a shortened form came twice (the first pair; 102,352 names, 0.5 s)."""


@pytest.mark.parametrize(
    ("first", "second"),
    [(MCP_NAME, provider_tool_name(MCP_NAME, 64)), DIGEST_TWINS],
    ids=["a tool named as another's shortened form", "two long names whose digests agree"],
)
@pytest.mark.parametrize("where", ["tools", "history"])
@pytest.mark.parametrize(
    "translate", [translate_request, responses_request], ids=["chat", "responses"]
)
def test_two_tools_the_provider_would_see_as_one_are_refused(
    first, second, where, translate
) -> None:
    """Every call to either would come back as one of them."""
    short = provider_tool_name(first, 64)
    assert provider_tool_name(second, 64) == short
    offered = [{"name": n, "input_schema": {"type": "object"}} for n in (first, second)]
    body = {"messages": [turn({"type": "text", "text": "hi"})], "tools": offered}
    if where == "history":
        history = [turn(tool_use("c1", second), role="assistant"), turn(tool_result("c1"))]
        body = {"messages": [*body["messages"], *history], "tools": offered[:1]}
    with pytest.raises(TranslationError) as refused:
        translate(body, model="m")
    assert refused.value.message == (
        f"tools: {first!r} and {second!r} would both reach the provider as {short!r} "
        "(tool names longer than 64 characters, or with characters other than A-Z a-z 0-9 _ -, "
        "are shortened); rename one of them"
    )
    assert refused.value.error_type == "invalid_request_error"
    with pytest.raises(TranslationError):
        translator_for("openai", body, upstream_model="m")


# -- A 2xx answer that is an error -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (
            b'{"error": {"message": "slow down", "type": "rate_limit_exceeded", "code": 429}}',
            429,
            "rate_limit_error",
        ),
        (
            b'[{"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}}]',
            503,
            "overloaded_error",
        ),
        (b"<html>bad gateway</html>", 502, "api_error"),
    ],
)
def test_a_2xx_error_body_gets_its_own_status(body, status, kind) -> None:
    translation = ResponseTranslation(
        ChatTranslator(upstream_model="m", model="m"), streaming_requested=False
    )
    translation.on_headers(200, "")
    out = translation.on_body(body, end=True)
    assert translation.client_status == status
    assert orjson.loads(out)["error"]["type"] == kind


# -- Images and PDFs in tool results -----------------------------------------------------------

PDF = {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}


def test_pdfs_become_file_parts_where_the_provider_takes_them() -> None:
    document = {"type": "document", "source": PDF, "title": "spec.pdf"}
    history = [turn(tool_result("t", [document]), {"type": "text", "text": "summarise"})]
    messages = request({"messages": history}, contract_for("openai", "gpt-5.2"))["messages"]
    assert messages[0] == {"role": "tool", "tool_call_id": "t", "content": "[document]"}
    assert messages[1]["content"][1] == {
        "type": "file",
        "file": {"filename": "spec.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
    }
    # Elsewhere the placeholder stays (Gemini's OpenAI endpoint documents no file parts).
    messages = request({"messages": history}, GEMINI3)["messages"]
    assert messages == [
        {"role": "tool", "tool_call_id": "t", "content": "[document: application/pdf]"},
        {"role": "user", "content": "summarise"},
    ]


# -- The smaller ones --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "cached", "written", "uncached"),
    [(120.6, 50, 30, 41), (80, 80, 0, 0), (80, 90, 0, 0)],
    ids=["fractional", "all cached", "more cached than sent"],
)
def test_usage_cache_writes_and_fractional_counts(prompt, cached, written, uncached) -> None:
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": 17.2,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_creation_tokens": written},
    }
    answer = {"id": "u", "choices": [{"index": 0, "message": {"content": "x"}}], "usage": usage}
    _, body = translate_response(200, orjson.dumps(answer), model="m")
    assert orjson.loads(body)["usage"] == {
        "input_tokens": uncached,
        "output_tokens": 17,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": written,
    }


@pytest.mark.parametrize("name", [None, "", 7])
def test_tool_use_without_a_name_is_refused(name) -> None:
    block = {"type": "tool_use", "id": "t1", "input": {}}
    if name is not None:
        block["name"] = name
    with pytest.raises(TranslationError) as raised:
        request({"messages": [turn(block, role="assistant")]})
    assert raised.value.error_type == "invalid_request_error"
    assert "messages.0.content.0.name" in raised.value.message


def test_claude_code_session_becomes_the_prompt_cache_key_where_documented() -> None:
    user_id = json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": "62f6-ab"})
    body = {"messages": [turn({"type": "text", "text": "x"})], "metadata": {"user_id": user_id}}
    assert request(body, contract_for("openai", "gpt-5.2"))["prompt_cache_key"] == "62f6-ab"
    assert "prompt_cache_key" not in request(body, contract_for("xai", "grok-4"))
    plain = {**body, "metadata": {"user_id": "alice"}}
    assert "prompt_cache_key" not in request(plain, contract_for("openai", "gpt-5.2"))
    for session, key in (("s", "s"), ("", None), ("x" * 64, "x" * 64), ("x" * 65, None)):
        user_id = json.dumps({"session_id": session})
        out = request({**body, "metadata": {"user_id": user_id}}, contract_for("openai", "gpt-5"))
        assert out.get("prompt_cache_key") == key, session
    broken = {**body, "metadata": {"user_id": '{"session_id": "s"'}}
    assert "prompt_cache_key" not in request(broken, contract_for("openai", "gpt-5"))


# -- Chat Completions streams: what each part of a chunk may hold ------------------------------


def sse(*chunks: Any) -> bytes:
    """Chunks (dicts, or raw SSE bytes) as a stream that ends with [DONE]."""
    raw = [c if isinstance(c, bytes) else b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks]
    return b"".join(raw) + b"data: [DONE]\n\n"


def delta(content: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": content, **({"finish_reason": finish} if finish else {})}
    return {"id": "s", "choices": [choice]}


def call(**fields: Any) -> dict[str, Any]:
    return delta({"tool_calls": [fields]})


def text_delta(index: int, text: str) -> dict[str, Any]:
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "text_delta", "text": text},
    }


def test_other_choices_junk_and_empty_refusals_are_skipped_and_a_refusal_is_text() -> None:
    chunks = sse(
        b"data: [1, 2]\n\n",
        {
            "id": "s",
            "choices": [
                "junk",
                {"index": 1, "delta": {"content": "other"}},
                {"index": 0, "delta": {"content": "a", "refusal": "", "tool_calls": ["junk"]}},
            ],
        },
        delta({"refusal": "No."}),
    )
    assert events(stream(chunks))[1:] == [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        text_delta(0, "a"),
        text_delta(0, "No."),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 1},
        },
        {"type": "message_stop"},
    ]


def test_text_waits_behind_a_call_whose_arguments_only_look_complete() -> None:
    # '{"command":"}' ends in a brace but is no JSON object yet: the call stays open.
    chunks = sse(
        call(index=0, id="a", function={"name": "Bash", "arguments": '{"command":"}'}),
        delta({"content": "x"}),
        delta({"content": "y"}),
        call(index=0, function={"arguments": '"}'}),
        delta({}, "tool_calls"),
    )
    content = [b.model_dump(exclude_none=True) for b in accumulate(stream(chunks)).content]
    assert content == [
        {"type": "tool_use", "id": "a", "name": "Bash", "input": {"command": "}"}},
        {"type": "text", "text": "xy"},
    ]


def test_a_call_cut_by_the_token_limit_lets_everything_waiting_out_in_order() -> None:
    chunks = sse(
        call(index=0, id="a", function={"name": "Bash", "arguments": '{"a":'}),
        call(index=1, id="b", function={"name": "Read", "arguments": "{}"}),
        delta({"content": "t"}),
        delta({}, "length"),
    )
    evs = events(stream(chunks))
    assert [(e["type"], e.get("index")) for e in evs[1:-2]] == [
        (kind, i)
        for i in range(3)
        for kind in ("content_block_start", "content_block_delta", "content_block_stop")
    ]
    assert [evs[1 + 3 * i]["content_block"].get("id") for i in range(3)] == ["a", "b", None]
    assert evs[-2]["delta"]["stop_reason"] == "max_tokens"


def test_calls_without_index_are_matched_by_their_id() -> None:
    chunks = sse(
        call(id="a", function={"name": "Bash", "arguments": '{"command":'}),
        call(id="b", function={"name": "Read", "arguments": "{}"}),
        call(id="a", function={"arguments": '"ls"}'}),
    )
    message = accumulate(stream(chunks))
    assert [(b.id, b.name, b.input) for b in message.content] == [
        ("a", "Bash", {"command": "ls"}),
        ("b", "Read", {}),
    ]


@pytest.mark.parametrize(
    ("chunks", "tail"),
    [
        (
            b'event: error\ndata: {"message":"overloaded","type":"overloaded_error"}\n\n',
            b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"overloaded"}}\n\n',
        ),
        (
            sse(delta({"content": "a"}), call(index=0, function="x")),
            b'event: error\ndata: {"type":"error","error":{"type":"api_error",'
            b'"message":"malformed chunk from upstream: '
            + error_text(lambda: "x".get("name")).encode()  # the chunk's function is "x"
            + b'"}}\n\n',
        ),
    ],
)
def test_an_error_event_or_a_malformed_chunk_ends_the_stream_with_an_error(chunks, tail) -> None:
    out = stream(chunks)
    assert out.endswith(tail)
    assert out.count(b"event: error") == 1 and b"message_stop" not in out


def test_an_answer_sent_whole_to_a_stream_is_replayed_as_events() -> None:
    answer = {
        "id": "c1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "reasoning_content": "hmm", "content": "hi"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    }
    usage = {
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "input_tokens": 5,
        "output_tokens": 2,
    }
    evs = events(stream(orjson.dumps(answer)))
    assert evs[0]["message"]["usage"] == usage
    assert evs[1:] == [
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "hmm"},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        text_delta(1, "hi"),
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": usage,
        },
        {"type": "message_stop"},
    ]


def test_a_call_signed_twice_after_it_closed_sends_the_last_signature_once() -> None:
    fn = {"name": "Bash", "arguments": '{"command":"ls"}'}

    def late(signature: str) -> dict[str, Any]:
        return call(index=0, extra_content={"google": {"thought_signature": signature}})

    chunks = sse(
        call(index=0, id="a", function=fn),
        call(index=1, id="b", function=fn),
        late("1=="),
        late("2=="),
    )
    message = accumulate(stream(chunks))
    signed = [signatures.state(b.signature) for b in message.content if b.type == "thinking"]
    assert signed == [{"tool_use_id": "a", "thought_signature": "2=="}]


def test_a_new_id_after_a_complete_call_at_the_same_index_is_a_new_call() -> None:
    """Ollama puts parallel calls at index 0 and may name a call only in a later chunk; a
    different id whose predecessor's arguments are complete starts a new call."""
    chunks = sse(
        call(index=0, id="a", function={"name": "Bash", "arguments": '{"command": "ls"}'}),
        call(index=0, id="b", function={"arguments": "{}"}),
    )
    message = accumulate(stream(chunks))
    assert [(b.id, b.name, b.input) for b in message.content] == [
        ("a", "Bash", {"command": "ls"}),
        ("b", "", {}),
    ]


def test_a_signature_on_a_calls_first_chunk_is_sent_once() -> None:
    """Gemini signs a call on its first chunk: one thinking block carries it, before the call."""
    signed = {"google": {"thought_signature": "1=="}}
    fn = {"name": "Bash", "arguments": '{"command":"ls"}'}
    chunks = sse(call(index=0, id="a", function=fn, extra_content=signed))
    message = accumulate(stream(chunks))
    assert [b.type for b in message.content] == ["thinking", "tool_use"]
    assert signatures.state(message.content[0].signature) == {
        "tool_use_id": "a",
        "thought_signature": "1==",
    }


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        (b"data: [DONE]\n\n", "upstream ended the stream without an answer"),
        (b"event: error\ndata: over\xffloaded\n\n", "over\ufffdloaded"),
    ],
    ids=["no answer", "an error that is not JSON nor UTF-8"],
)
def test_a_stream_without_an_answer_ends_with_its_reason(chunks: bytes, message: str) -> None:
    *_, last = events(stream(chunks))
    assert last == {"type": "error", "error": {"type": "api_error", "message": message}}


@pytest.mark.parametrize("finish", [{"reason": "stop"}, ["stop"]])
def test_a_finish_reason_that_is_not_a_string_ends_the_turn(finish: Any) -> None:
    answer = {
        "id": "f",
        "choices": [{"index": 0, "finish_reason": finish, "message": {"content": "x"}}],
    }
    _, body = translate_response(200, orjson.dumps(answer), model="m")
    assert orjson.loads(body)["stop_reason"] == "end_turn"
