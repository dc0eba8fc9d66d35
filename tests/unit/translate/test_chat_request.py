"""Anthropic Messages request → Chat Completions request: each rule, and real Claude Code bodies."""

from __future__ import annotations

import typing
from typing import Any

import orjson
import pytest
from openai.types.chat import (
    ChatCompletionContentPartParam,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
    completion_create_params,
)
from pydantic import TypeAdapter

from extproc.config.contract import Contract
from extproc.translate import TranslationError
from extproc.translate.openai_chat import translate_request
from tests.support.captured import FIXTURES
from tests.support.exception_text import error_text

KNOWN_KEYS = {*typing.get_type_hints(completion_create_params.CompletionCreateParamsBase), "stream"}
STREAMING = TypeAdapter(completion_create_params.CompletionCreateParamsStreaming)
NON_STREAMING = TypeAdapter(completion_create_params.CompletionCreateParamsNonStreaming)
# The params' `Iterable` fields validate lazily: check messages, parts and tools eagerly.
MESSAGES = TypeAdapter(list[ChatCompletionMessageParam])
PARTS = TypeAdapter(list[ChatCompletionContentPartParam])
TOOL_PARAMS = TypeAdapter(list[ChatCompletionToolParam])


def tr(body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    out = orjson.loads(translate_request(body, model=kwargs.pop("model", "gpt-x"), **kwargs))
    assert set(out) <= KNOWN_KEYS
    (STREAMING if out.get("stream") else NON_STREAMING).validate_python(out)
    MESSAGES.validate_python(out["messages"])
    for message in out["messages"]:
        if isinstance(message.get("content"), list):
            PARTS.validate_python(message["content"])
    TOOL_PARAMS.validate_python(out.get("tools", []))
    return out


def user(*content: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(content)}


def text(t: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": t, **extra}


REASONING = Contract(reasoning=True)

BASE = {
    "model": "claude-opus-4-8",
    "max_tokens": 1000,
    "messages": [{"role": "user", "content": "hi"}],
}


def test_model_and_minimal_body() -> None:
    assert tr(BASE, model="openai/gpt-4.1") == {
        "model": "openai/gpt-4.1",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 1000,
    }


def test_system_string_and_blocks_become_one_first_message() -> None:
    assert tr({**BASE, "system": "be brief"})["messages"][0] == {
        "role": "system",
        "content": "be brief",
    }
    blocks = [text("one", cache_control={"type": "ephemeral"}), text("two")]
    assert tr({**BASE, "system": blocks})["messages"][0] == {
        "role": "system",
        "content": "one\n\ntwo",
    }


def test_claude_code_billing_line_is_dropped_from_the_system_prompt() -> None:
    blocks = [
        text("x-anthropic-billing-header: cc_version=2.1.197.b3b; cc_entrypoint=cli;"),
        text("agent"),
    ]
    assert tr({**BASE, "system": blocks})["messages"][0]["content"] == "agent"


def test_mid_conversation_system_is_folded_into_the_system_message() -> None:
    body = {
        **BASE,
        "system": "top",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "agents: A, B"},
            {"role": "assistant", "content": "yes"},
            {"role": "system", "content": [text("more"), text("rules")]},
        ],
    }
    assert tr(body)["messages"] == [
        {"role": "system", "content": "top\n\nagents: A, B\n\nmore\n\nrules"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yes"},
    ]


def test_mid_conversation_system_without_a_top_level_one() -> None:
    body = {
        **BASE,
        "messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": "s"}],
    }
    assert tr(body)["messages"] == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "hi"},
    ]


def test_text_blocks_become_a_string() -> None:
    body = {**BASE, "messages": [user(text("a", cache_control={"type": "ephemeral"}), text("b"))]}
    assert tr(body)["messages"] == [{"role": "user", "content": "a\n\nb"}]


def test_images_make_a_list_of_parts() -> None:
    b64 = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"},
    }
    url = {"type": "image", "source": {"type": "url", "url": "https://x/y.jpg"}}
    body = {**BASE, "messages": [user(text("look"), b64, url)]}
    assert tr(body)["messages"][0]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
        {"type": "image_url", "image_url": {"url": "https://x/y.jpg"}},
    ]


def test_file_image_sources_cannot_be_translated() -> None:
    img = {"type": "image", "source": {"type": "file", "file_id": "file_1"}}
    with pytest.raises(TranslationError) as info:
        tr({**BASE, "messages": [user(img)]})
    assert info.value.error_type == "invalid_request_error"
    assert "messages.0.content.0" in info.value.message


TOOL_USE = {"type": "tool_use", "id": "toolu_01A", "name": "Bash", "input": {"command": "ls"}}


def test_tool_use_becomes_tool_calls_with_text_as_content() -> None:
    body = {
        **BASE,
        "messages": [
            {"role": "user", "content": "run ls"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "t", "signature": "s"},
                    text("ok"),
                    TOOL_USE,
                ],
            },
        ],
    }
    assert tr(body)["messages"][1] == {
        "role": "assistant",
        "content": "ok",
        "tool_calls": [
            {
                "id": "toolu_01A",
                "type": "function",
                "function": {"name": "Bash", "arguments": '{"command":"ls"}'},
            }
        ],
    }


def test_consecutive_assistant_messages_are_one_turn() -> None:
    # Claude Code sends a streamed answer back as one message per content block.
    body = {
        **BASE,
        "messages": [
            {"role": "user", "content": "run ls"},
            {"role": "assistant", "content": [text("first")]},
            {"role": "assistant", "content": "second"},
            {"role": "assistant", "content": [TOOL_USE]},
        ],
    }
    assert tr(body)["messages"][1:] == [
        {
            "role": "assistant",
            "content": "first\n\nsecond",
            "tool_calls": [
                {
                    "id": "toolu_01A",
                    "type": "function",
                    "function": {"name": "Bash", "arguments": '{"command":"ls"}'},
                }
            ],
        }
    ]


def test_an_assistant_turns_texts_without_calls_are_one_text_a_blank_line_apart() -> None:
    body = {
        **BASE,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [text("Hello."), text("How can I help?")]},
            {"role": "user", "content": "list files"},
        ],
    }
    assert tr(body)["messages"][1:] == [
        {"role": "assistant", "content": "Hello.\n\nHow can I help?"},
        {"role": "user", "content": "list files"},
    ]


def test_tool_use_without_text_has_null_content() -> None:
    body = {
        **BASE,
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [TOOL_USE]},
        ],
    }
    assert tr(body)["messages"][1]["content"] is None


def test_thinking_only_assistant_turns_are_dropped() -> None:
    thinking = [
        {"type": "thinking", "thinking": "t", "signature": "s"},
        {"type": "redacted_thinking", "data": "x"},
    ]
    body = {
        **BASE,
        "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": thinking}],
    }
    assert tr(body)["messages"] == [{"role": "user", "content": "x"}]


def test_tool_results_become_tool_messages_before_the_turns_text() -> None:
    results = user(
        text("and now this"),
        {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "file.txt"},
        {
            "type": "tool_result",
            "tool_use_id": "toolu_01B",
            "content": [text("boom")],
            "is_error": True,
        },
    )
    body = {
        **BASE,
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [TOOL_USE]},
            results,
        ],
    }
    assert tr(body)["messages"][2:] == [
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "file.txt"},
        {"role": "tool", "tool_call_id": "toolu_01B", "content": "Error: boom"},
        {"role": "user", "content": "and now this"},
    ]


def test_images_in_tool_results_follow_as_image_parts() -> None:
    png = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}
    jpg = {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "BB"}}
    shot = {"type": "tool_result", "tool_use_id": "t", "content": [text("shot:"), png]}
    photo = {"type": "tool_result", "tool_use_id": "u", "content": [jpg]}
    body = {**BASE, "messages": [user(shot, photo, text("what is on them?"))]}
    assert tr(body)["messages"] == [
        {"role": "tool", "tool_call_id": "t", "content": "shot:\n\n[image]"},
        {"role": "tool", "tool_call_id": "u", "content": "[image]"},
        {
            "role": "user",
            "content": [  # each result's images under their own label
                {"type": "text", "text": "[attachments of tool result t]"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                {"type": "text", "text": "[attachments of tool result u]"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,BB"}},
                {"type": "text", "text": "what is on them?"},
            ],
        },
    ]


def test_empty_tool_result() -> None:
    result = {"type": "tool_result", "tool_use_id": "t"}
    assert tr({**BASE, "messages": [user(result)]})["messages"][0]["content"] == ""


def test_tool_references_in_a_tool_result_read_as_their_names() -> None:
    found = [
        text("found:"),
        {"type": "tool_reference", "tool_name": "Read"},
        {"type": "redacted_thinking", "data": "x"},  # dropped, as elsewhere
        {"type": "tool_reference"},  # a nameless one stays visible: "[tool: ]" is intended
    ]
    result = {"type": "tool_result", "tool_use_id": "t", "content": found}
    assert tr({**BASE, "messages": [user(result)]})["messages"] == [
        {"role": "tool", "tool_call_id": "t", "content": "found:\n\n[tool: Read]\n\n[tool: ]"}
    ]


def test_documents_read_as_text_or_a_placeholder() -> None:
    plain = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
    }
    pdf = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVB"},
    }
    assert tr({**BASE, "messages": [user(plain, pdf)]})["messages"][0]["content"] == (
        "notes\n\n[document: application/pdf]"
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"type": "content", "content": [text("a"), text("b")]}, "a\n\nb"),
        ({"type": "content", "content": [{"type": "image"}, text("b"), "x"]}, "b"),
        ({"type": "content", "content": [text("a"), {"type": "image"}, text("b")]}, "a\n\nb"),
        ({"type": "content", "content": [{"type": "text", "text": 5}, text("b")]}, "b"),
        ({"type": "url", "url": "https://example.com/a.pdf"}, "[document: url]"),
        ({"type": "file", "media_type": "", "file_id": "f"}, "[document: file]"),
        (None, "[document: unknown]"),
    ],
)
def test_document_sources(source: Any, expected: str) -> None:
    document = {"type": "document", "source": source}
    assert tr({**BASE, "messages": [user(document)]})["messages"] == [
        {"role": "user", "content": expected}
    ]


def test_server_tool_blocks_in_history_are_dropped() -> None:
    server = {
        "type": "server_tool_use",
        "id": "srvtoolu_1",
        "name": "web_search",
        "input": {"query": "q"},
    }
    result = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}
    body = {
        **BASE,
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [server, result, text("found")]},
        ],
    }
    assert tr(body)["messages"][1] == {"role": "assistant", "content": "found"}
    body["messages"].append(user(result, text("thanks")))
    assert tr(body)["messages"][2] == {"role": "user", "content": "thanks"}


def assistant(*content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": list(content)}


def result_of(content: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": "t", "content": content}


TOO_BIG = error_text(lambda: orjson.dumps(2**70))  # orjson's words for an integer past 64 bits


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"messages": "nope"}, "messages: field required (a list)"),
        ({"messages": ["hi"]}, "messages.0: must be an object"),
        (
            {"messages": [{"role": "robot", "content": "x"}]},
            "messages.0.role: unexpected value 'robot'",
        ),
        (
            {"messages": [{"role": "user", "content": 3}]},
            "messages.0.content: must be a string or a list of blocks",
        ),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 3}]},
            "messages.1.content: must be a string or a list of blocks",
        ),
        (
            {"messages": [{"role": "user", "content": ["hi"]}]},
            "messages.0.content: must be a string or a list of blocks",
        ),
        (
            {"messages": [user({"type": "hologram"})]},
            "messages.0.content.0: content block type 'hologram' can't be translated for this provider",
        ),
        ({"messages": [user(text(5))]}, "messages.0.content.0.text: must be a string"),
        (
            {"messages": [user(text("q")), assistant(text("a"), text(5))]},
            "messages.1.content.1.text: must be a string",
        ),
        (
            {"messages": [user(text("q")), assistant({"type": "hologram"})]},
            "messages.1.content.0: content block type 'hologram' can't be translated for this provider",
        ),
        ({"system": 3}, "system: must be a string or a list of text blocks"),
        (
            {"messages": [{"role": "system", "content": [text(5)]}]},
            "messages.0.content: must be a string or a list of text blocks",
        ),
        (
            {"messages": [user(result_of(["x"]))]},
            "messages.0.content.0.content.0: must be an object",
        ),
        (
            {"messages": [user(result_of(5))]},
            "messages.0.content.0.content: must be a string or a list of blocks",
        ),
        (
            {"messages": [user(result_of([{"type": "hologram"}]))]},
            "messages.0.content.0.content.0: content block type 'hologram' can't be translated"
            " for this provider",
        ),
        (
            {"messages": [assistant({**TOOL_USE, "input": {"n": 2**70}})]},
            "messages.0.content.0.input: " + TOO_BIG,
        ),
        ({"tools": [{"input_schema": {"type": "object"}}]}, "tools: every tool needs a name"),
        ({"tools": [{"name": ""}]}, "tools: every tool needs a name"),
        ({"temperature": 2**70}, "request can't be encoded as JSON: " + TOO_BIG),
    ],
)
def test_untranslatable_requests_name_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(TranslationError) as raised:
        translate_request({**BASE, **fields}, model="m")
    assert raised.value.message == message
    assert raised.value.error_type == "invalid_request_error"


TOOLS = [
    {
        "name": "Bash",
        "description": "run",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
        "cache_control": {"type": "ephemeral"},
    },
    {"type": "custom", "name": "Read", "input_schema": {"type": "object"}},
    {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
    {"type": "bash_20250124", "name": "bash"},
    {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
]


def test_tools_become_functions_and_server_tools_are_dropped() -> None:
    assert tr({**BASE, "tools": TOOLS})["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "Bash",
                "description": "run",
                "parameters": TOOLS[0]["input_schema"],
            },
        },
        {"type": "function", "function": {"name": "Read", "parameters": {"type": "object"}}},
    ]


def test_only_server_tools_means_no_tools_and_no_tool_choice() -> None:
    out = tr({**BASE, "tools": TOOLS[2:], "tool_choice": {"type": "any"}})
    assert "tools" not in out and "tool_choice" not in out


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "Bash"},
            {"tool_choice": {"type": "function", "function": {"name": "Bash"}}},
        ),
        ({"type": "tool", "name": "web_search"}, {}),
        ({"type": "tool"}, {}),
        (
            {"type": "tool", "name": "", "disable_parallel_tool_use": True},
            {"parallel_tool_calls": False},
        ),
        ({"type": "none", "disable_parallel_tool_use": True}, {"tool_choice": "none"}),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            {"tool_choice": "auto", "parallel_tool_calls": False},
        ),
        (
            {"type": "any", "disable_parallel_tool_use": True},
            {"tool_choice": "required", "parallel_tool_calls": False},
        ),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    out = tr({**BASE, "tools": TOOLS, "tool_choice": choice})
    assert {k: out[k] for k in ("tool_choice", "parallel_tool_calls") if k in out} == expected


def test_sampling_stop_and_max_tokens() -> None:
    body = {
        **BASE,
        "max_tokens": 64000,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["a", "b", "c", "d", "e"],
    }
    out = tr(body, max_tokens_cap=32768)
    assert (out["max_tokens"], out["temperature"], out["top_p"], out["stop"]) == (
        32768,
        0.2,
        0.9,
        ["a", "b", "c", "d"],
    )
    assert "top_k" not in out
    assert tr({**BASE, "max_tokens": 100}, max_tokens_cap=32768)["max_tokens"] == 100


def test_stream_asks_for_usage() -> None:
    out = tr({**BASE, "stream": True})
    assert (out["stream"], out["stream_options"]) == (True, {"include_usage": True})
    assert "stream" not in tr({**BASE, "stream": False})
    # Mistral rejects stream_options (it always streams usage).
    out = tr({**BASE, "stream": True}, contract=Contract(stream_options=False))
    assert (out["stream"], "stream_options" in out) == (True, False)


@pytest.mark.parametrize(
    ("thinking", "output_config", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, None, "low"),
        ({"type": "enabled", "budget_tokens": 4096}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 16383}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 16384}, None, "high"),
        ({"type": "adaptive"}, None, "medium"),
        ({"type": "adaptive"}, {"effort": "low"}, "low"),
        ({"type": "adaptive"}, {"effort": "max"}, "high"),
        ({"type": "adaptive"}, {"effort": "turbo"}, "medium"),
        ({"type": "disabled"}, {"effort": "high"}, None),
    ],
)
def test_thinking_becomes_reasoning_effort_when_supported(
    thinking: Any, output_config: Any, effort: Any
) -> None:
    body = {
        **BASE,
        "thinking": thinking,
        **({"output_config": output_config} if output_config else {}),
    }
    assert tr(body, contract=REASONING).get("reasoning_effort") == effort
    assert "reasoning_effort" not in tr(body)


def test_structured_output_becomes_response_format() -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    body = {
        **BASE,
        "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": schema}},
    }
    assert tr(body)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": False},
    }
    assert (
        tr({**BASE, "output_format": {"type": "json_schema", "schema": schema}})["response_format"][
            "json_schema"
        ]["schema"]
        == schema
    )


def test_metadata_user_id_fits_in_64_characters() -> None:
    assert tr({**BASE, "metadata": {"user_id": "u-1"}})["user"] == "u-1"
    assert tr({**BASE, "metadata": {"user_id": "u" * 64}})["user"] == "u" * 64
    long_id = '{"device_id":"' + "0" * 64 + '","session_id":"abc"}'
    user_field = tr({**BASE, "metadata": {"user_id": long_id}})["user"]
    assert len(user_field) == 64
    assert user_field == tr({**BASE, "metadata": {"user_id": long_id}})["user"]


def test_anthropic_only_fields_are_dropped() -> None:
    body = {
        **BASE,
        "context_management": {"edits": []},
        "container": "c",
        "mcp_servers": [],
        "service_tier": "auto",
        "output_config": {"effort": "high"},
        "anthropic_beta": ["x"],
    }
    assert set(tr(body)) == {"model", "messages", "max_tokens"}


def load(name: str) -> dict[str, Any]:
    return orjson.loads((FIXTURES / f"{name}.json").read_bytes())["body"]


@pytest.mark.parametrize(
    "name", ["first-turn", "tool-loop", "interactive-title", "interactive-main"]
)
def test_claude_code_fixtures(name: str) -> None:
    body = load(name)
    out = tr(body, model="gpt-4.1", max_tokens_cap=32768)
    messages = out["messages"]
    assert messages[0]["role"] == "system"
    assert all(m["role"] != "system" for m in messages[1:])
    assert "x-anthropic-billing-header" not in messages[0]["content"]
    assert out["max_tokens"] == 32768
    assert out["stream"] is True
    n_tools = len(body.get("tools", []))
    assert len(out.get("tools", [])) == n_tools
    if n_tools:  # the agent's mid-conversation system entry was folded in
        assert "Available agent types" in messages[0]["content"]
    orjson.loads(orjson.dumps(out))


def test_tool_loop_fixture_pairs_the_result_with_its_call() -> None:
    messages = tr(load("tool-loop"))["messages"]
    [(i, call)] = [(i, m) for i, m in enumerate(messages) if m.get("tool_calls")]
    assert messages[i + 1] == {
        "role": "tool",
        "tool_call_id": call["tool_calls"][0]["id"],
        "content": "hi there",
    }
    assert call["tool_calls"][0]["id"] == "toolu_01"
    assert orjson.loads(call["tool_calls"][0]["function"]["arguments"]) == {
        "command": "echo hi there",
        "description": "say hi",
    }


def test_interactive_title_fixture_asks_for_json() -> None:
    body = load("interactive-title")
    out = tr(body, contract=REASONING)
    assert (
        out["response_format"]["json_schema"]["schema"] == body["output_config"]["format"]["schema"]
    )
    assert "reasoning_effort" not in out  # thinking disabled
    assert "tools" not in out


def test_first_turn_fixture_reasoning_and_system_reminders() -> None:
    out = tr(load("first-turn"), contract=REASONING)
    assert out["reasoning_effort"] == "high"  # adaptive thinking with output_config.effort high
    assert out["messages"][1]["role"] == "user"
    assert out["messages"][1]["content"].endswith("write a python function that reverses a string")


def test_server_tools_are_dropped_from_a_real_request() -> None:
    body = load("first-turn")
    body["tools"] = [*body["tools"], {"type": "web_search_20250305", "name": "web_search"}]
    out = tr(body)
    assert "web_search" not in {t["function"]["name"] for t in out["tools"]}


def test_compaction_summaries_and_search_results_read_as_text() -> None:
    compaction = {"type": "compaction", "content": "Earlier: we fixed the parser."}
    failed = {"type": "compaction", "content": None}
    upload = {"type": "container_upload", "file_id": "f"}
    search = {
        "type": "search_result",
        "source": "https://x",
        "title": "Doc",
        "content": [text("body")],
    }
    body = {
        **BASE,
        "messages": [
            {"role": "user", "content": [search]},
            {"role": "assistant", "content": [compaction, failed, upload]},
        ],
    }
    assert tr(body)["messages"] == [
        {"role": "user", "content": "Doc\n\nbody"},
        {"role": "assistant", "content": "Earlier: we fixed the parser."},
    ]


def test_short_tool_ids_are_stable_and_keep_provider_ids() -> None:
    from extproc.translate.openai_chat.request import short_tool_id

    assert short_tool_id("toolu_01A09q90qw90lq917835lq9") == short_tool_id(
        "toolu_01A09q90qw90lq917835lq9"
    )
    assert len(short_tool_id("toolu_x")) == 9 and short_tool_id("toolu_x").isalnum()
    assert short_tool_id("abcDEF123") == "abcDEF123"
    assert short_tool_id("toolu_a") != short_tool_id("toolu_b")


def test_short_tool_ids_replace_the_ids_of_calls_results_and_attachments() -> None:
    img = {"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_01A", "content": [img]}
    body = {
        **BASE,
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [TOOL_USE]},
            user(result),
        ],
    }
    messages = tr(body, contract=Contract(short_tool_ids=True))["messages"]
    assert messages[1]["tool_calls"][0]["id"] == "Ccrdvy8t4"
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "Ccrdvy8t4", "content": "[image]"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "[attachments of tool result Ccrdvy8t4]"},
                {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
            ],
        },
    ]
