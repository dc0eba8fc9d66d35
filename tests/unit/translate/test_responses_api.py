"""Anthropic Messages ⇄ OpenAI Responses: requests, answers, and streams whatever their split
points, checked with the Anthropic SDK's accumulator, the `openai` SDK's own types and stream
accumulator (through the shared builders), and the strict Responses fake's rules."""

from __future__ import annotations

import re
import typing
from dataclasses import replace
from typing import Any

import orjson
import pytest
from anthropic.types import Message
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import ResponseInputParam, response_create_params
from pydantic import TypeAdapter

from extproc.config.contract import contract_for
from extproc.translate import signatures
from extproc.translate.anthropic_format import TranslationError
from extproc.translate.openai_responses import (
    StreamTranslator,
    translate_request,
    translate_response,
)
from extproc.translate.openai_responses.reasoning import reasoning_item
from tests.support.anthropic_sse import accumulate, sdk_client
from tests.support.anthropic_sse import events as anthropic_events
from tests.support.anthropic_sse import translate as feed_cut
from tests.support.captured import captured
from tests.support.fake_responses import refusal
from tests.support.responses_streams import (
    ANSWERS,
    BASH,
    READ,
    SECRET,
    Answer,
    Call,
    check_with_sdk,
    encrypted_for,
    events,
    response,
    sse,
)

KNOWN_KEYS = {*typing.get_type_hints(response_create_params.ResponseCreateParamsBase), "stream"}
STREAMING = TypeAdapter(response_create_params.ResponseCreateParamsStreaming)
NON_STREAMING = TypeAdapter(response_create_params.ResponseCreateParamsNonStreaming)
INPUT = TypeAdapter(ResponseInputParam)


def ours(encrypted: str = SECRET, origin: str = "") -> str:
    """The signature the translator gives reasoning item rs_0a1b2c answered at `origin`."""
    answer = orjson.dumps(response(Answer(reasoning=True, encrypted=encrypted, text="x")))
    _, body = translate_response(200, answer, model="m", origin=origin)
    return orjson.loads(body)["content"][0]["signature"]


def carried(signature: str) -> dict[str, str]:
    """What a signature carries, less the origin tag."""
    return {k: v for k, v in signatures.state(signature).items() if k != "origin"}


OURS = ours()


def altered(**fields: Any) -> str:
    """OURS with `fields` replaced, its origin tag kept: a state we never sign ourselves."""
    return signatures.sign({**signatures.state(OURS), **fields})


CODEX = contract_for("openai", "gpt-5.2-codex")
GPT41 = contract_for("openai", "gpt-4.1")


# -- requests ---------------------------------------------------------------------------------


def tr(body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Translate, then check the result as the SDK's params and as the strict fake would."""
    out = orjson.loads(
        translate_request(body, model=kwargs.pop("model", "gpt-5.2-codex"), **kwargs)
    )
    assert set(out) <= KNOWN_KEYS
    (STREAMING if out.get("stream") else NON_STREAMING).validate_python(out)
    INPUT.validate_python(out["input"])  # the params validate their iterables lazily
    refused = refusal(out)
    assert refused is None, refused and refused.message
    return out


BASE = {
    "model": "claude-opus-4-8",
    "max_tokens": 1000,
    "messages": [{"role": "user", "content": "hi"}],
}


def test_minimal_body() -> None:
    assert tr(BASE, model="gpt-4.1") == {
        "model": "gpt-4.1",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
        ],
        "max_output_tokens": 1000,
        "store": False,
    }


def test_system_prompt_becomes_instructions_without_the_billing_line() -> None:
    body = {
        **BASE,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=1;"},
            {
                "type": "text",
                "text": "You are Claude Code.",
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "messages": [*BASE["messages"], {"role": "system", "content": "Available agent types: x"}],
    }
    out = tr(body)
    assert out["instructions"] == "You are Claude Code.\n\nAvailable agent types: x"
    assert [i["role"] for i in out["input"]] == ["user"]


def test_a_system_messages_text_blocks_join_the_instructions() -> None:
    texts = [{"type": "text", "text": "Agent types: x"}, {"type": "text", "text": "Skills: y"}]
    body = {**BASE, "messages": [*BASE["messages"], {"role": "system", "content": texts}]}
    assert tr(body)["instructions"] == "Agent types: x\n\nSkills: y"


def test_a_message_of_an_unknown_role_is_refused_with_its_place() -> None:
    body = {**BASE, "messages": [*BASE["messages"], {"role": "tool", "content": "x"}]}
    with pytest.raises(TranslationError) as raised:
        translate_request(body, model="m")
    assert str(raised.value) == "messages.1.role: unexpected value 'tool'"


def test_tool_loop_items_in_order() -> None:
    body = {
        **BASE,
        "messages": [
            {"role": "user", "content": "run it"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "plan", "signature": OURS},
                    {"type": "text", "text": "Running."},
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "Bash",
                        "input": {"command": "ls"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_1",
                        "content": "a.txt",
                        "is_error": True,
                    },
                    {"type": "text", "text": "and now?"},
                ],
            },
        ],
    }
    items = tr(body, contract=CODEX)["input"]
    assert items[1:] == [
        {
            "type": "reasoning",
            "id": "rs_0a1b2c",
            "summary": [{"type": "summary_text", "text": "plan"}],
            "encrypted_content": SECRET,
        },
        {"type": "message", "role": "assistant", "content": "Running."},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "Bash",
            "arguments": '{"command":"ls"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "Error: a.txt"},
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "and now?"}],
        },
    ]


def test_consecutive_assistant_texts_go_back_as_one_message() -> None:
    body = {
        **BASE,
        "messages": [
            {"role": "user", "content": "run it"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "First."},
                    {"type": "text", "text": "Then."},
                    {"type": "tool_use", "id": "call_1", "name": "Bash", "input": {}},
                    {"type": "text", "text": "After."},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "ok"}],
            },
        ],
    }
    assert tr(body)["input"][1:] == [
        {"type": "message", "role": "assistant", "content": "First.\n\nThen."},
        {"type": "function_call", "call_id": "call_1", "name": "Bash", "arguments": "{}"},
        {"type": "message", "role": "assistant", "content": "After."},
        {"type": "function_call_output", "call_id": "call_1", "output": "ok"},
    ]


@pytest.mark.parametrize(
    "signature",
    [
        "",
        None,
        "EqQBCkYIBxgCKkBhc2lnbmF0dXJl",  # Anthropic's
        signatures.sign({"tool_use_id": "c1", "thought_signature": "g"}),  # Gemini's, via us
        signatures.sign({"reasoning_id": "rs_1"}),  # no encrypted content
        signatures.PREFIX + "not-base64!",
        # Ours, for this origin, but altered: OpenAI refuses an item without both strings.
        altered(encrypted_content=""),
        altered(encrypted_content=5),
        altered(reasoning_id=""),
        altered(reasoning_id=7),
    ],
)
def test_foreign_or_broken_thinking_never_reaches_openai(signature: Any) -> None:
    block = {"type": "thinking", "thinking": "t", "signature": signature}
    assert reasoning_item(block, origin="") is None
    assert reasoning_item({**block, "signature": altered()}, origin="") is not None  # unaltered
    body = {
        **BASE,
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [block, {"type": "text", "text": "a"}]},
            {"role": "user", "content": "q2"},
        ],
    }
    assert [i["type"] for i in tr(body)["input"]] == ["message"] * 3


def test_reasoning_goes_back_only_where_it_came_from() -> None:
    """Another server or model can't decrypt it; sent there, it would fail the request."""
    here, there = "https://api.openai.com/v1 gpt-5.2-codex", "https://api.x.ai/v1 grok-4"
    block = {"type": "thinking", "thinking": "t", "signature": ours(origin=here)}
    body = {
        **BASE,
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [block, {"type": "text", "text": "a"}]},
            {"role": "user", "content": "q2"},
        ],
    }
    sent = orjson.loads(translate_request(body, model="m", origin=here))["input"]
    assert [i["type"] for i in sent] == ["message", "reasoning", "message", "message"]
    elsewhere = orjson.loads(translate_request(body, model="m", origin=there))["input"]
    assert [i["type"] for i in elsewhere] == ["message"] * 3


def test_redacted_thinking_is_dropped() -> None:
    body = {
        **BASE,
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "abc"}]},
            {"role": "user", "content": "q2"},
        ],
    }
    assert len(tr(body)["input"]) == 2


def test_images_become_input_images() -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
    }
    url = {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}
    out = tr(
        {
            **BASE,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "see"}, image, url]}
            ],
        }
    )
    assert out["input"][0]["content"] == [
        {"type": "input_text", "text": "see"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBO", "detail": "auto"},
        {"type": "input_image", "image_url": "https://x/y.png", "detail": "auto"},
    ]


def test_images_in_tool_results_reach_the_model() -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
    }
    results = [
        {
            "type": "tool_result",
            "tool_use_id": "c1",
            "content": [{"type": "text", "text": "shot:"}, image],
        },
        {"type": "tool_result", "tool_use_id": "c2", "content": [image], "is_error": True},
    ]
    body = {
        **BASE,
        "messages": [
            {"role": "user", "content": "look"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "c1", "name": "Read", "input": {}},
                    {"type": "tool_use", "id": "c2", "name": "Read", "input": {}},
                ],
            },
            {"role": "user", "content": results},
        ],
    }
    png = {"type": "input_image", "image_url": "data:image/png;base64,iVBO", "detail": "auto"}
    outputs = [i["output"] for i in tr(body)["input"] if i["type"] == "function_call_output"]
    assert outputs == [
        [{"type": "input_text", "text": "shot:\n\n[image]"}, png],
        [{"type": "input_text", "text": "Error: [image]"}, png],
    ]


def test_pdfs_go_as_input_files_where_the_contract_allows() -> None:
    pdf = {
        "type": "document",
        "title": "spec.pdf",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
    }
    body = {**BASE, "messages": [{"role": "user", "content": [pdf]}]}
    want = {
        "type": "input_file",
        "filename": "spec.pdf",
        "file_data": "data:application/pdf;base64,JVBE",
    }
    assert tr(body, contract=GPT41, model="gpt-4.1")["input"][0]["content"] == [want]
    assert tr(body)["input"][0]["content"] == [
        {"type": "input_text", "text": "[document: application/pdf]"}
    ]


def test_long_tool_names_are_shortened_and_restored() -> None:
    name = "mcp__" + "very_long_server_name__" * 4 + "tool"
    body = {
        **BASE,
        "tools": [{"name": name, "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": name},
    }
    out = tr(body, contract=GPT41, model="gpt-4.1")
    short = out["tools"][0]["name"]
    assert len(short) <= 64 and out["tool_choice"] == {"type": "function", "name": short}
    call = Call("call_1", short, "{}")
    answer = orjson.dumps(response(Answer(calls=(call,))))
    _, translated = translate_response(200, answer, model="m", tool_names={short: name})
    assert orjson.loads(translated)["content"][0]["name"] == name
    streamed = accumulate(translate(sse(events(Answer(calls=(call,)))), tool_names={short: name}))
    assert streamed.content[0].name == name
    # A streamed request answered with one whole JSON body (some proxies do) too.
    whole = accumulate(translate(answer, tool_names={short: name}))
    assert whole.content[0].name == name


def test_tools_are_function_tools_without_strict_schemas() -> None:
    schema = {
        "type": "object",
        "properties": {"command": {}, "timeout": {}},
        "required": ["command"],
    }
    body = {
        **BASE,
        "tools": [
            {"name": "Bash", "description": "run", "input_schema": schema, "cache_control": {}},
            {"type": "web_search_20250305", "name": "web_search"},
        ],
        "tool_choice": {"type": "tool", "name": "Bash", "disable_parallel_tool_use": True},
    }
    out = tr(body)
    assert out["tools"] == [
        {
            "type": "function",
            "name": "Bash",
            "description": "run",
            "parameters": schema,
            "strict": False,
        }
    ]
    assert out["tool_choice"] == {"type": "function", "name": "Bash"}
    assert out["parallel_tool_calls"] is False
    # The fake refuses the same tool under the API's default (strict) schemas.
    strict = {**out, "tools": [{k: v for k, v in out["tools"][0].items() if k != "strict"}]}
    assert "required" in refusal(strict).message


@pytest.mark.parametrize(
    ("choice", "want"), [("auto", "auto"), ("any", "required"), ("none", "none")]
)
def test_tool_choice(choice: str, want: str) -> None:
    body = {
        **BASE,
        "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": choice},
    }
    assert tr(body)["tool_choice"] == want


def test_max_tokens_is_capped_and_kept_at_the_api_minimum() -> None:
    assert tr({**BASE, "max_tokens": 64000}, max_tokens_cap=32000)["max_output_tokens"] == 32000
    assert tr({**BASE, "max_tokens": 1})["max_output_tokens"] == 16
    assert (
        "below minimum"
        in refusal({"model": "gpt-4.1", "input": "x", "max_output_tokens": 1}).message
    )


def test_adaptive_thinking_becomes_reasoning_with_summaries_and_encrypted_content() -> None:
    body = {
        **BASE,
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
        "temperature": 1,
        "top_p": 0.9,
    }
    out = tr(body, contract=CODEX)
    assert out["reasoning"] == {"effort": "high", "summary": "auto"}
    assert out["include"] == ["reasoning.encrypted_content"]
    assert "temperature" not in out and "top_p" not in out  # reasoning models refuse them
    disabled = tr({**BASE, "thinking": {"type": "disabled"}}, contract=CODEX)
    assert "reasoning" not in disabled and disabled["include"] == ["reasoning.encrypted_content"]
    plain = tr(body, model="gpt-4.1")
    assert "reasoning" not in plain and "include" not in plain
    assert (plain["temperature"], plain["top_p"]) == (1, 0.9)


def test_effort_stays_beside_function_tools() -> None:
    """GPT-5.2 and later refuse effort with function tools on Chat Completions, not here."""
    body = {
        **BASE,
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
        "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
    }
    contract = contract_for("openai", "gpt-5.6-codex")
    assert contract.tools_effort != "keep"
    out = tr(body, contract=contract, model="gpt-5.6-codex")
    assert out["reasoning"] == {"effort": "high", "summary": "auto"} and out["tools"]


def test_a_model_that_reads_no_images_gets_their_place() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "x"}}
    body = {**BASE, "messages": [{"role": "user", "content": [image]}]}
    out = tr(body, contract=replace(GPT41, images=False), model="gpt-4.1")
    assert out["input"][0]["content"] == [{"type": "input_text", "text": "[image]"}]


def test_reasoning_summaries_can_be_turned_off_for_unverified_organizations() -> None:
    body = {**BASE, "thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}}
    asked = tr(body, contract=CODEX)
    assert "must be verified" in refusal(asked, verified=False).message
    quiet = tr(body, contract=replace(CODEX, reasoning_summaries=False))
    assert quiet["reasoning"] == {"effort": "low"}
    assert refusal(quiet, verified=False) is None


def test_structured_output_stream_user_and_cache_key() -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    body = {
        **BASE,
        "stream": True,
        "stop_sequences": ["END"],
        "top_k": 5,
        "output_config": {"format": {"type": "json_schema", "schema": schema}},
        "metadata": {
            "user_id": orjson.dumps({"device_id": "d" * 64, "session_id": "s-1"}).decode()
        },
        "context_management": {"edits": []},
    }
    out = tr(body, contract=GPT41, model="gpt-4.1")
    assert out["text"] == {
        "format": {"type": "json_schema", "name": "output", "schema": schema, "strict": False}
    }
    assert out["stream"] is True and out["store"] is False
    assert len(out["safety_identifier"]) == 64
    assert out["prompt_cache_key"] == "s-1"  # Claude Code's session shares one prompt cache
    assert "prompt_cache_key" not in tr(body)  # only where the contract says the API has it
    assert not {"stop", "stop_sequences", "top_k", "context_management"} & set(out)


@pytest.mark.parametrize(
    "name", ["first-turn", "tool-loop", "interactive-title", "interactive-main"]
)
def test_claude_code_requests_pass_the_strict_fake(name: str) -> None:
    body = captured(name)["body"]
    out = tr(body, contract=CODEX)
    assert out["tools"] if body.get("tools") else "tools" not in out
    assert all(t["strict"] is False for t in out.get("tools", []))


def test_the_fake_refuses_what_openai_refuses() -> None:
    base = {"model": "gpt-5.2-codex", "input": "hi", "store": False}
    assert refusal(base) is None
    for bad in (
        {"max_tokens": 100},
        {"messages": []},
        {"reasoning_effort": "high"},
        {"stop": ["x"]},
    ):
        assert refusal({**base, **bad}).message.startswith("Unknown parameter")
    no_encrypted = [{"type": "reasoning", "id": "rs_1", "summary": []}]
    assert refusal({**base, "input": no_encrypted}).status == 404
    forged = [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "forged"}]
    assert "could not be verified" in refusal({**base, "input": forged}).message
    issued = [
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": encrypted_for(1)}
    ]
    assert refusal({**base, "input": issued}) is None
    orphan = [{"type": "function_call_output", "call_id": "c1", "output": "x"}]
    assert "No tool call found" in refusal({**base, "input": orphan}).message
    unanswered = [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}]
    assert "No tool output found" in refusal({**base, "input": unanswered}).message
    assert "temperature" in refusal({**base, "temperature": 1}).message


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            [{"type": "mystery"}],
            "messages.0.content.0: content block type 'mystery' can't be translated for this"
            " provider",
        ),
        (
            [{"type": "text", "text": "see"}, {"type": "image", "source": {"type": "file"}}],
            "messages.0.content.1.source: image source 'file' unsupported",
        ),
    ],
)
def test_unknown_blocks_fail_loudly(content: list[dict[str, Any]], message: str) -> None:
    body = {**BASE, "messages": [{"role": "user", "content": content}]}
    with pytest.raises(TranslationError) as raised:
        translate_request(body, model="m")
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("role", "message"),
    [
        ("system", "messages.1.content: must be a string or a list of text blocks"),
        ("assistant", "messages.1.content: must be a string or a list of blocks"),
        ("user", "messages.1.content: must be a string or a list of blocks"),
    ],
)
def test_content_that_is_no_list_is_refused_with_its_place(role: str, message: str) -> None:
    body = {**BASE, "messages": [{"role": "user", "content": "q"}, {"role": role, "content": 5}]}
    with pytest.raises(TranslationError) as raised:
        translate_request(body, model="m")
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("role", "block", "message"),
    [
        ("assistant", {"type": "text", "text": 5}, "messages.1.content.1.text: must be a string"),
        (
            "assistant",
            {"type": "tool_use", "id": "c1", "input": {}},
            "messages.1.content.1.name: a tool_use block needs a name",
        ),
        (
            "user",
            {"type": "tool_result", "tool_use_id": "c1", "content": 5},
            "messages.1.content.1.content: must be a string or a list of blocks",
        ),
    ],
)
def test_history_blocks_that_cant_be_read_are_refused_with_their_place(
    role: str, block: dict[str, Any], message: str
) -> None:
    content = [{"type": "text", "text": "ok"}, block]
    body = {**BASE, "messages": [*BASE["messages"], {"role": role, "content": content}]}
    with pytest.raises(TranslationError) as raised:
        translate_request(body, model="m")
    assert str(raised.value) == message


# -- answers ----------------------------------------------------------------------------------


def non_streamed(answer: Answer) -> Message:
    status, body = translate_response(200, orjson.dumps(response(answer)), model="routed-model")
    assert status == 200, body
    return Message.model_validate_json(body)


def test_non_streamed_reasoning_tool_answer() -> None:
    message = non_streamed(ANSWERS["reasoning-tool"])
    assert [b.model_dump(exclude_none=True) for b in message.content] == [
        {"type": "thinking", "thinking": "Need to run it.", "signature": OURS},
        {
            "type": "tool_use",
            "id": "call_bash01",
            "name": "Bash",
            "input": orjson.loads(BASH.arguments),
        },
    ]
    assert message.id == "msg_resp_0a1b2c" and message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (176, 1024)
    assert message.usage.output_tokens == 42


def test_calls_without_a_call_id_get_ids_of_their_own() -> None:
    """Distinct, from the response id, in the charset Anthropic accepts for tool_use ids."""
    call = {"type": "function_call", "name": "Bash", "arguments": BASH.arguments}
    answer = {"id": "resp_9", "status": "completed", "output": [call, call, call]}
    status, body = translate_response(200, orjson.dumps(answer), model="m")
    message = Message.model_validate_json(body)
    assert status == 200 and message.id == "msg_resp_9"
    assert [b.id for b in message.content if b.type == "tool_use"] == ["toolu_resp_9_0", "toolu_resp_9_1", "toolu_resp_9_2"]  # fmt: skip


def test_an_answer_without_an_id_gets_one_from_its_body() -> None:
    """The same answer always gets the same id; another answer, another one."""

    def message_id(text: str) -> str:
        item = {"type": "message", "content": [{"type": "output_text", "text": text}]}
        answer = orjson.dumps({"status": "completed", "output": [item]})
        return Message.model_validate_json(translate_response(200, answer, model="m")[1]).id

    first = message_id("hi")
    assert re.fullmatch("msg_[0-9a-f]{24}", first)
    assert message_id("hi") == first != message_id("ho")


def test_reasoning_without_encrypted_content_is_unsigned() -> None:
    """Nothing could go back to the provider: a summary shows unsigned, a silent item not at all."""
    message = non_streamed(ANSWERS["summary-without-encrypted"])
    assert [b.model_dump(exclude_none=True) for b in message.content] == [
        {"type": "thinking", "thinking": "Think.", "signature": ""},
        {"type": "text", "text": "Done."},
    ]
    assert [b.type for b in non_streamed(Answer(reasoning=True, text="x")).content] == ["text"]


def test_reasoning_shows_its_raw_text_without_a_summary_and_unsigned_without_id_or_content() -> (
    None
):
    """Open-weight models send their reasoning as `content`; an item that lacks its id or
    encrypted content could not go back, so its thinking block carries no signature."""
    summary = [{"type": "summary_text", "text": "Think."}]
    raw = [{"type": "reasoning_text", "text": "raw thought"}]
    output = [
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": raw},
        {"type": "reasoning", "id": "rs_2", "summary": summary, "encrypted_content": ""},
        {"type": "reasoning", "summary": summary, "encrypted_content": "gAAAA"},
    ]
    answer = orjson.dumps({"id": "r", "status": "completed", "output": output})
    message = Message.model_validate_json(translate_response(200, answer, model="m")[1])
    assert [(b.type, b.thinking, b.signature) for b in message.content] == [
        ("thinking", "raw thought", ""),
        ("thinking", "Think.", ""),
        ("thinking", "Think.", ""),
    ]


def test_output_items_and_summary_parts_that_cant_be_read_are_skipped() -> None:
    """An item that is no object, or a summary part whose text is no string, is left out; the
    rest of the answer still reaches the user."""
    summary = [{"type": "summary_text", "text": 5}, {"type": "summary_text", "text": "Think."}]
    output = [
        "junk",
        {"type": "reasoning", "id": "rs_1", "summary": summary},
        {"type": "message", "content": [{"type": "output_text", "text": "Done."}]},
    ]
    answer = orjson.dumps({"id": "r", "status": "completed", "output": output})
    status, body = translate_response(200, answer, model="m")
    assert status == 200, body
    message = Message.model_validate_json(body)
    assert [b.model_dump(exclude_none=True) for b in message.content] == [
        {"type": "thinking", "thinking": "Think.", "signature": ""},
        {"type": "text", "text": "Done."},
    ]


def test_a_message_items_texts_and_refusals_are_joined_as_they_came() -> None:
    parts = [
        {"type": "output_text", "text": "Here is "},
        {"type": "output_text", "text": "the start. "},
        {"type": "refusal", "refusal": "I can't help with the rest."},
    ]
    output = [{"type": "message", "content": parts}]
    answer = orjson.dumps({"id": "r", "status": "completed", "output": output})
    message = Message.model_validate_json(translate_response(200, answer, model="m")[1])
    assert [b.model_dump() for b in message.content] == [
        {
            "type": "text",
            "text": "Here is the start. I can't help with the rest.",
            "citations": None,
        }
    ]


@pytest.mark.parametrize(
    ("usage", "want"),
    [
        (
            {
                "input_tokens": 1200,
                "input_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 150},
                "output_tokens": 42,
            },
            (50, 42, 1000, 150),
        ),
        (
            {"input_tokens": 1024, "input_tokens_details": {"cached_tokens": 1024}},
            (0, 0, 1024, 0),
        ),
        (None, (0, 0, 0, 0)),
    ],
)
def test_usage_counts_cache_reads_and_writes_apart(
    usage: dict[str, Any] | None, want: tuple[int, ...]
) -> None:
    u = non_streamed(Answer(text="x", usage=usage)).usage
    assert (
        u.input_tokens,
        u.output_tokens,
        u.cache_read_input_tokens,
        u.cache_creation_input_tokens,
    ) == want


@pytest.mark.parametrize(
    ("name", "stop"),
    [
        ("max-tokens", "max_tokens"),
        ("content-filter", "refusal"),
        ("text", "end_turn"),
        ("parallel", "tool_use"),
    ],
)
def test_stop_reasons(name: str, stop: str) -> None:
    assert non_streamed(ANSWERS[name]).stop_reason == stop


def test_thinking_round_trips_into_the_next_request() -> None:
    message = non_streamed(ANSWERS["codex-silent-reasoning"])
    body = {
        **BASE,
        "messages": [
            {"role": "user", "content": "read it"},
            {
                "role": "assistant",
                "content": [b.model_dump(exclude_none=True) for b in message.content],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": message.content[1].id, "content": "x"}
                ],
            },
        ],
    }
    out = orjson.loads(translate_request(body, model="gpt-5.2-codex", contract=CODEX))
    assert out["input"][1] == {
        "type": "reasoning",
        "id": "rs_0a1b2c",
        "summary": [],
        "encrypted_content": SECRET,
    }


@pytest.mark.parametrize(
    ("status", "body", "want_status", "kind", "message"),
    [
        (
            429,
            b'{"error": {"message": "slow", "type": "requests", "code": "rate_limit_exceeded"}}',
            429,
            "rate_limit_error",
            "slow",
        ),
        (
            404,
            b'{"error": {"message": "Item with id \'rs_1\' not found."}}',
            404,
            "not_found_error",
            "Item with id 'rs_1' not found.",
        ),
        (500, b"<html>oops</html>", 500, "api_error", "upstream answered HTTP 500: oops"),
        (
            200,
            b'{"id": "r", "status": "failed", "output": [], "error": {"code": "rate_limit_exceeded", "message": "m"}}',
            429,
            "rate_limit_error",
            "m",
        ),
        (
            200,
            b'{"id": "r", "status": "failed", "output": [], "error": {"code": "invalid_prompt", "message": "m"}}',
            400,
            "invalid_request_error",
            "m",
        ),
        (
            200,
            b'{"id": "r", "status": "failed", "output": [], "error": {"code": "server_error", "message": "m"}}',
            500,
            "api_error",
            "m",
        ),
        (
            200,
            b'{"id": "r", "status": "failed", "output": []}',
            500,
            "api_error",
            "the response failed",
        ),
        (
            200,
            b"not json",
            502,
            "api_error",
            "invalid JSON from upstream: upstream answered HTTP 200: not json",
        ),
        (200, b'{"object": "list"}', 502, "api_error", "upstream answer has no output"),
        (200, b'{"error": {"code": 429, "message": "busy"}}', 429, "rate_limit_error", "busy"),
        (200, b'{"error": {"message": "odd"}}', 502, "api_error", "odd"),
        # An error beside the output, whatever the status says.
        (200, b'{"id": "r", "output": [], "error": {"message": "boom"}}', 500, "api_error", "boom"),
        (
            200,
            b'{"id": "r", "output": [{"type": "function_call", "call_id": "c", "name": ["x"]}]}',
            502,
            "api_error",
            "malformed answer from upstream: a tool call's name must be a string, not list",
        ),
        (
            200,
            b'{"id": "r", "output": [{"type": "function_call", "call_id": "c", "name": 5}]}',
            502,
            "api_error",
            "malformed answer from upstream: a tool call's name must be a string, not int",
        ),
    ],
)
def test_errors(status: int, body: bytes, want_status: int, kind: str, message: str) -> None:
    got_status, got = translate_response(status, body, model="m")
    assert (got_status, orjson.loads(got)["error"]) == (
        want_status,
        {"type": kind, "message": message},
    )


# -- streams ----------------------------------------------------------------------------------


def translate(stream: bytes, cuts: list[int] = (), **kwargs: Any) -> bytes:
    return feed_cut(stream, cuts, StreamTranslator, **kwargs)


def compact(answer: Answer, size: int) -> bytes:
    """A small stream: lifecycle events without their response bodies' optional fields."""
    return sse(trimmed(events(answer, size=size)), named=False)


def trimmed(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`items` with their response bodies cut to the fields the translator reads."""
    keep = ("id", "object", "status", "model", "output", "usage", "incomplete_details", "error")
    for item in items:
        if "response" in item:
            item["response"] = {k: item["response"][k] for k in keep}
    return items


def same_at_every_split_point(stream: bytes) -> bytes:
    """The translation of `stream`, checked to be the same bytes however it is cut in two."""
    whole = translate(stream)
    for cut in range(1, len(stream)):
        assert translate(stream, [cut]) == whole, cut
    return whole


FRAMINGS = {
    "named": lambda a: sse(events(a)),
    "unnamed-crlf-nospace": lambda a: sse(events(a), newline="\r\n", space=False, named=False),
    "one-char-deltas-cr": lambda a: sse(events(a, size=1), newline="\r"),
    "whole-deltas": lambda a: sse(events(a, size=10_000)),
}
CASES = {f"{n}/{f}": frame(a) for n, a in ANSWERS.items() for f, frame in FRAMINGS.items()}
SMALL = {
    "text": compact(Answer(text="Hi é😀", usage=None), 3),
    "reasoning-tool": compact(
        Answer(summary=("plan",), encrypted="enc", calls=(BASH,), usage=None), 30
    ),
}


def test_the_builders_agree_with_the_openai_sdk() -> None:
    for answer in ANSWERS.values():
        assert check_with_sdk(events(answer)) == response(answer)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_single_split_point_gives_the_same_bytes(name: str) -> None:
    same_at_every_split_point(SMALL[name])


@settings(max_examples=40, deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(CASES)))
def test_random_multi_splits_give_the_same_bytes(data: st.DataObject, name: str) -> None:
    stream = CASES[name]
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=30))
    assert translate(stream, cuts) == translate(stream)


@pytest.mark.parametrize("name", sorted(CASES))
def test_streamed_message_matches_non_streamed(name: str) -> None:
    answer = ANSWERS[name.partition("/")[0]]
    streamed, plain = accumulate(translate(CASES[name])), non_streamed(answer)
    assert [b.model_dump() for b in streamed.content] == [b.model_dump() for b in plain.content]
    assert (streamed.stop_reason, streamed.id) == (plain.stop_reason, plain.id)
    if answer.usage:
        assert streamed.usage == plain.usage


def test_expected_events_for_a_reasoning_tool_call() -> None:
    answer = Answer(summary=("ab", "c"), encrypted="enc", calls=(BASH,))
    got = [
        (e["type"], e.get("index"), (e.get("delta") or e.get("content_block") or {}).get("type"))
        for e in anthropic_events(translate(sse(events(answer, size=2))))
    ]
    assert got == [
        ("message_start", None, None),
        ("content_block_start", 0, "thinking"),
        ("content_block_delta", 0, "thinking_delta"),  # "ab"
        ("content_block_delta", 0, "thinking_delta"),  # "\n\n" between summary parts
        ("content_block_delta", 0, "thinking_delta"),  # "c"
        ("content_block_delta", 0, "signature_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, "tool_use"),
        *[("content_block_delta", 1, "input_json_delta")] * -(-len(BASH.arguments) // 2),
        ("content_block_stop", 1, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]
    evs = anthropic_events(translate(sse(events(answer, size=2))))
    assert carried(evs[5]["delta"]["signature"]) == {
        "reasoning_id": "rs_0a1b2c",
        "encrypted_content": "enc",
    }
    assert evs[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}


def test_expected_events_for_text() -> None:
    evs = anthropic_events(
        translate(sse(events(Answer(text="Hi there"), size=100)), input_tokens_estimate=9)
    )
    assert evs == [
        {
            "type": "message_start",
            "message": {
                "id": "msg_resp_0a1b2c",
                "type": "message",
                "role": "assistant",
                "model": "routed-model",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 9,
                    "output_tokens": 1,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                },
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Hi there"},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {
                "input_tokens": 176,
                "output_tokens": 42,
                "cache_read_input_tokens": 1024,
                "cache_creation_input_tokens": 0,
            },
        },
        {"type": "message_stop"},
    ]


def test_interleaved_items_wait_for_their_turn() -> None:
    """A whole message item arriving while a call streams is sent after the call, in one delta."""
    items = events(Answer(text="a note in three deltas", calls=(BASH,), usage=None), size=8)
    message = [e for e in items if e.get("output_index") == 0]
    rest = [e for e in items if e not in message]
    deltas = [i for i, e in enumerate(rest) if e["type"].endswith("arguments.delta")]
    shuffled = rest[: deltas[1]] + message + rest[deltas[1] :]
    out = translate(sse(shuffled))
    message_out = accumulate(out)
    assert [b.type for b in message_out.content] == ["tool_use", "text"]
    assert message_out.content[0].input == orjson.loads(BASH.arguments)
    assert message_out.content[1].text == "a note in three deltas"
    text_deltas = [
        e for e in anthropic_events(out) if e.get("delta", {}).get("type") == "text_delta"
    ]
    assert len(text_deltas) == 1


def test_failed_response_mid_stream_is_an_error_event() -> None:
    items = events(ANSWERS["text"])
    failed = {
        **response(ANSWERS["text"], status="failed", output=[]),
        "error": {"code": "rate_limit_exceeded", "message": "slow down"},
    }
    stream = sse(
        [*items[:-1], {"type": "response.failed", "sequence_number": 99, "response": failed}]
    )
    evs = anthropic_events(translate(stream))
    assert evs[0]["type"] == "message_start"
    assert evs[-1] == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }


@pytest.mark.parametrize(
    "error",
    [
        {
            "type": "error",
            "code": "server_error",
            "message": "boom",
            "param": None,
            "sequence_number": 3,
        },
        {"error": {"code": "server_error", "message": "boom"}},  # typeless, as proxies send it
        {"type": "error", "message": "boom", "sequence_number": 3},  # no code: a 500's type
        {"type": "error", "code": "no_such_code", "message": "boom"},
    ],
)
def test_error_event_stops_the_stream(error: dict[str, Any]) -> None:
    items = [*events(ANSWERS["text"])[:3], error, *events(ANSWERS["text"])[3:]]
    evs = anthropic_events(translate(sse(items, named="type" in error)))
    assert evs[-1] == {"type": "error", "error": {"type": "api_error", "message": "boom"}}
    assert [e["type"] for e in evs].count("message_stop") == 0


def test_an_error_event_that_is_not_json_still_ends_the_stream() -> None:
    """Other data that isn't JSON is a proxy's keep-alive noise, skipped."""
    items = events(ANSWERS["text"])
    head = sse(items[:3]) + b"data: keep-alive\n\n"
    evs = anthropic_events(translate(head + b"event: error\ndata: upstream exploded\n\n"))
    assert evs[-1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "upstream exploded"},
    }
    assert accumulate(translate(head + sse(items[3:]))) == accumulate(translate(sse(items)))


def test_an_event_without_a_type_or_an_error_is_skipped() -> None:
    """A proxy's keep-alive may be JSON too: only an `error` in it ends the stream."""
    items = events(ANSWERS["text"])
    noisy = sse(items[:3], named=False) + b'data: {"keep_alive": true}\n\n' + sse(items[3:])
    assert translate(noisy) == translate(sse(items[:3], named=False) + sse(items[3:]))


def test_http_error_on_a_streamed_request() -> None:
    tr = StreamTranslator(model="m")
    body = b'{"error": {"message": "Incorrect API key provided.", "code": "invalid_api_key"}}'
    assert anthropic_events(tr.error(401, body)) == [
        {
            "type": "error",
            "error": {"type": "authentication_error", "message": "Incorrect API key provided."},
        }
    ]
    assert tr.finish() == b""


def test_cut_stream_still_terminates() -> None:
    stream = sse(events(ANSWERS["reasoning-tool"]))
    cut = stream[: stream.index(b"response.function_call_arguments.done")]
    message = accumulate(translate(cut))
    assert [b.type for b in message.content] == ["thinking", "tool_use"]
    assert message.stop_reason == "tool_use"
    assert message.content[0].signature == OURS
    assert message.content[1].input == orjson.loads(BASH.arguments)
    early = accumulate(translate(stream[: stream.index(b"response.reasoning_summary_part.done")]))
    assert early.content[0].signature == ""  # the finished reasoning item never arrived


def test_nothing_at_all_is_an_error_event() -> None:
    for stream in (b"", b": ping\n\n", b"\r\n"):
        assert [e["type"] for e in anthropic_events(translate(stream))] == ["error"]


def test_json_answer_to_a_streamed_request_is_replayed_as_events() -> None:
    answer = ANSWERS["reasoning-tool"]
    body = orjson.dumps(response(answer))
    message = accumulate(translate(body, [len(body) // 2]))
    plain = non_streamed(answer)
    assert [b.model_dump() for b in message.content] == [b.model_dump() for b in plain.content]
    # Its reasoning is signed for where it came from, as a streamed answer's is.
    origin = "https://api.openai.com/v1|gpt-5.2"
    signed = accumulate(translate(body, origin=origin))
    assert signed.content[0].signature == ours(origin=origin) != OURS


@pytest.mark.parametrize("left_out", [(".delta",), (".delta", "output_item.added")])
def test_whole_items_without_deltas(left_out: tuple[str, ...]) -> None:
    """Servers that send only `output_item.done` (no deltas, maybe not even `added`) still
    give the whole answer."""
    items = [e for e in events(ANSWERS["reasoning-tool"]) if not e["type"].endswith(left_out)]
    message = accumulate(translate(sse(items)))
    assert [b.model_dump() for b in message.content] == [
        b.model_dump() for b in non_streamed(ANSWERS["reasoning-tool"]).content
    ]


@pytest.mark.parametrize("arguments", [None, {"command": "ls"}], ids=["missing", "an object"])
def test_a_whole_call_item_whose_arguments_are_no_string_has_no_input(arguments: Any) -> None:
    items = [e for e in events(Answer(calls=(BASH,))) if not e["type"].endswith(".delta")]
    for item in items:
        if item["type"].startswith("response.output_item."):
            call = {k: v for k, v in item["item"].items() if k != "arguments"}
            item["item"] = call if arguments is None else {**call, "arguments": arguments}
    message = accumulate(translate(sse(items)))
    assert [(b.type, b.name, b.input) for b in message.content] == [("tool_use", BASH.name, {})]
    assert message.stop_reason == "tool_use"


def without_call_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_call_ids(v) for k, v in value.items() if k != "call_id"}
    return [without_call_ids(v) for v in value] if isinstance(value, list) else value


def test_streamed_calls_without_a_call_id_get_ids_of_their_own_in_each_answer() -> None:
    """From the answer's id, as in a whole answer: two answers' calls never share an id (a
    later turn's tool_result would point at both)."""
    ids = []
    for answer_id in ("resp_1", "resp_2"):
        stream = sse(without_call_ids(events(Answer(calls=(BASH, READ, BASH), id=answer_id))))
        ids += [b.id for b in accumulate(translate(stream)).content]
    assert ids == [f"toolu_resp_{n}_{i}" for n in (1, 2) for i in range(3)]


def test_a_whole_item_done_while_an_earlier_one_streams_waits_its_turn() -> None:
    """Reasoning still streaming when the message after it arrives whole (its `done` only):
    the text is kept until the reasoning's block closes, then sent in its own block."""
    answer = Answer(summary=("Let me think.",), encrypted="enc", text="Hello there.")
    items = events(answer)
    text_index = next(e["output_index"] for e in items if e["type"] == "response.output_text.delta")
    of_text = [e for e in items if e.get("output_index") == text_index]
    others = [e for e in items if e.get("output_index") != text_index]
    whole = next(e for e in of_text if e["type"] == "response.output_item.done")
    reasoning_done = next(
        i for i, e in enumerate(others) if e["type"] == "response.output_item.done"
    )
    stream = sse([*others[:reasoning_done], whole, *others[reasoning_done:]])
    message = accumulate(translate(stream))
    assert [b.model_dump() for b in message.content] == [
        b.model_dump() for b in non_streamed(answer).content
    ]


def test_mixed_blocks_keep_their_order_and_each_its_own_index() -> None:
    """Reasoning, text and two calls: four blocks, numbered 0-3 in the order they came."""
    answer = Answer(summary=("Plan.",), encrypted=SECRET, text="Running both.", calls=(BASH, READ))
    evs = anthropic_events(translate(sse(events(answer))))
    starts = [
        (e["index"], e["content_block"]["type"]) for e in evs if e["type"] == "content_block_start"
    ]
    assert starts == [(0, "thinking"), (1, "text"), (2, "tool_use"), (3, "tool_use")]
    stops = [e["index"] for e in evs if e["type"] == "content_block_stop"]
    assert stops == [0, 1, 2, 3]
    message = accumulate(translate(sse(events(answer))))
    assert [b.model_dump() for b in message.content] == [
        b.model_dump() for b in non_streamed(answer).content
    ]


def test_the_sdk_message_stream_reads_translated_streams() -> None:
    stream = translate(sse(events(ANSWERS["reasoning-tool"])))
    client = sdk_client(stream)
    request = {
        "model": "claude-x",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with client.messages.stream(**request) as s:
        final = s.get_final_message()
    assert final.content[0].signature == OURS


# -- stream edge cases: what lax servers send -------------------------------------------------


def test_a_tool_name_that_is_not_a_string_ends_the_stream_with_an_error() -> None:
    items = events(Answer(text="hi", calls=(BASH,)))
    for item in items:
        if item["type"].startswith("response.output_item.") and item["output_index"] == 1:
            item["item"] = {**item["item"], "name": 5}
    evs = anthropic_events(translate(sse(items)))
    assert not [e for e in evs if e.get("content_block", {}).get("type") == "tool_use"]
    assert evs[-1] == {
        "type": "error",
        "error": {
            "type": "api_error",
            "message": "malformed event from upstream: "
            "a tool call's name must be a string, not int",
        },
    }


@pytest.mark.parametrize("deltas", [True, False])
def test_a_repeated_output_item_done_sends_nothing_more(deltas: bool) -> None:
    """The SDK would show the text twice, the second time after its block's stop."""
    items = trimmed(events(Answer(text="Hi there", usage=None), size=3))
    if not deltas:
        items = [e for e in items if not e["type"].endswith(".delta")]
    done = next(i for i, e in enumerate(items) if e["type"] == "response.output_item.done")
    items.insert(done + 1, items[done])
    out = same_at_every_split_point(sse(items, named=False))
    assert accumulate(out).content[0].text == "Hi there"
    texts = [
        e["delta"]["text"] for e in anthropic_events(out) if e["type"] == "content_block_delta"
    ]
    assert "".join(texts) == "Hi there"


def announced_late(items: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """`items` with each output item's `added` moved after the first `n` of its deltas."""
    out = list(items)
    for added in [e for e in items if e["type"] == "response.output_item.added"]:
        index = added["output_index"]
        deltas = [
            i
            for i, e in enumerate(out)
            if e.get("output_index") == index and e["type"].endswith(".delta")
        ]
        out.remove(added)
        out.insert(deltas[n - 1], added)
    return out


def test_deltas_before_their_item_is_announced_are_kept_for_it() -> None:
    """A text's deltas stream at once; a call's wait for its name."""
    answer = Answer(text="Hi there", calls=(Call("call_1", "Bash", '{"command":"ls"}'),))
    items = announced_late(trimmed(events(replace(answer, usage=None), size=3)), n=2)
    message = accumulate(same_at_every_split_point(sse(items, named=False)))
    assert [b.model_dump() for b in message.content] == [
        b.model_dump() for b in non_streamed(answer).content
    ]


def test_arguments_for_a_call_never_announced_end_in_an_error() -> None:
    items = [e for e in events(Answer(text="hi", calls=(BASH,))) if e.get("output_index") != 1]
    arguments = {"type": "response.function_call_arguments.delta", "output_index": 1}
    items.insert(-1, {**arguments, "item_id": "fc_1", "delta": '{"command": "ls"}'})
    evs = anthropic_events(translate(sse(items)))
    assert not [e for e in evs if e.get("content_block", {}).get("type") == "tool_use"]
    assert evs[-1]["error"] == {
        "type": "api_error",
        "message": "malformed event from upstream: "
        "output item 1 has arguments but never named its call",
    }


def test_an_item_announced_as_another_kind_than_its_deltas_ends_in_an_error() -> None:
    items = announced_late(events(Answer(text="Hi there")), n=1)
    added = next(e for e in items if e["type"] == "response.output_item.added")
    added["item"] = {"type": "function_call", "call_id": "c", "name": "Bash", "arguments": ""}
    evs = anthropic_events(translate(sse(items)))
    assert evs[-1]["error"] == {
        "type": "api_error",
        "message": "malformed event from upstream: "
        "output item 0 is a function_call but its deltas were text",
    }


def test_a_repeated_output_item_added_changes_nothing() -> None:
    """Calls without a call_id are numbered in order: a second `added` takes no number."""
    answer = Answer(calls=(Call("", "Bash", "{}"), Call("", "Read", "{}")), usage=None)
    items = events(answer)
    again = [e for e in items if e["type"] == "response.output_item.added"]
    doubled = [x for e in items for x in ([e, e] if e in again else [e])]
    assert translate(sse(doubled)) == translate(sse(items))


def test_a_delta_that_is_empty_or_no_string_sends_nothing() -> None:
    """Some servers open a part with an empty delta; a number is no text either."""
    items = trimmed(events(Answer(text="Hi there", usage=None), size=3))
    first = next(i for i, e in enumerate(items) if e["type"] == "response.output_text.delta")
    noise = [{**items[first], "delta": ""}, {**items[first], "delta": 5}]
    with_noise = [*items[:first], *noise, *items[first:]]
    assert translate(sse(with_noise)) == translate(sse(items))


def test_an_empty_delta_leaves_the_whole_item_its_text() -> None:
    """An item whose only delta was empty is sent whole when it is done."""
    items = [e for e in events(Answer(text="Hi there")) if not e["type"].endswith(".delta")]
    added = next(i for i, e in enumerate(items) if e["type"] == "response.output_item.added")
    empty = {"type": "response.output_text.delta", "output_index": 0, "delta": ""}
    items.insert(added + 1, empty)
    assert accumulate(translate(sse(items))).content[0].text == "Hi there"


@pytest.mark.parametrize("stray", ["after its item is done", "of another kind than its item"])
def test_a_delta_that_does_not_fit_its_item_is_dropped(stray: str) -> None:
    """After the item's block closed, a delta would follow its stop; one of another kind would
    put text into a thinking block."""
    answer = Answer(summary=("Plan.",), encrypted=SECRET, text="Hi there", usage=None)
    items = trimmed(events(answer))
    text_delta = next(e for e in items if e["type"] == "response.output_text.delta")
    if stray == "after its item is done":
        at = max(i for i, e in enumerate(items) if e["type"] == "response.output_item.done") + 1
        late = {**text_delta, "delta": " again"}
    else:
        at = next(i for i, e in enumerate(items) if e["type"].endswith("summary_text.delta"))
        late = {**text_delta, "output_index": 0, "delta": " again"}
    assert translate(sse([*items[:at], late, *items[at:]])) == translate(sse(items))


@pytest.mark.parametrize(
    "left_out",
    [(), ("output_item.added",), (".delta", "output_item.added")],
    ids=["added first", "a delta first", "done first"],
)
def test_a_stream_without_its_lifecycle_start_begins_with_its_first_item(
    left_out: tuple[str, ...],
) -> None:
    """No `response.created` nor `in_progress`: the first item's event starts the message,
    whichever it is (its `added`, a delta, or its `done` from a server that sends whole
    items)."""
    starts = ("response.created", "response.in_progress")
    items = [
        e
        for e in events(ANSWERS["reasoning-tool"])
        if e["type"] not in starts and not any(e["type"].endswith(end) for end in left_out)
    ]
    message = accumulate(translate(sse(items)))
    assert [b.model_dump() for b in message.content] == [
        b.model_dump() for b in non_streamed(ANSWERS["reasoning-tool"]).content
    ]
    assert message.stop_reason == "tool_use"


def test_a_calls_arguments_before_any_added_are_named_by_its_done() -> None:
    """No `output_item.added` at all: the call's arguments stream first and wait; its `done`
    names the call, and the block is sent whole with its id and name."""
    answer = Answer(calls=(BASH,))
    items = [e for e in events(answer) if e["type"] != "response.output_item.added"]
    message = accumulate(translate(sse(items)))
    assert [b.model_dump() for b in message.content] == [
        b.model_dump() for b in non_streamed(answer).content
    ]


def test_an_error_event_that_is_neither_json_nor_utf8_still_ends_the_stream() -> None:
    head = sse(events(ANSWERS["text"])[:3])
    evs = anthropic_events(translate(head + b"event: error\ndata: upstream \xff exploded\n\n"))
    assert evs[-1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "upstream \ufffd exploded"},
    }


def test_a_stream_of_only_its_completed_event_is_an_empty_message() -> None:
    """No output item at all: the message still starts, with the answer's id and usage."""
    completed = events(Answer(usage=None))[-1]
    assert completed["type"] == "response.completed"
    evs = anthropic_events(translate(sse([completed])))
    assert [e["type"] for e in evs] == ["message_start", "message_delta", "message_stop"]
    assert evs[0]["message"]["id"] == "msg_resp_0a1b2c"
    assert evs[1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}


def test_a_calls_arguments_before_its_added_wait_though_the_item_before_it_ends() -> None:
    """The text before the call finishes while the call's first arguments have come but not
    its `added`: the call's block waits for its id and name."""
    answer = Answer(text="Hi there", calls=(BASH,), usage=None)
    items = trimmed(events(answer))
    call_added = next(
        e for e in items if e["type"] == "response.output_item.added" and e["output_index"] == 1
    )
    first_arguments = next(e for e in items if e["type"].endswith("arguments.delta"))
    text_done = next(e for e in items if e["type"] == "response.output_item.done")
    rest = [e for e in items if e not in (call_added, first_arguments)]
    at = rest.index(text_done)
    late = [*rest[:at], first_arguments, text_done, call_added, *rest[at + 1 :]]
    message = accumulate(translate(sse(late)))
    assert [b.model_dump() for b in message.content] == [
        b.model_dump() for b in non_streamed(answer).content
    ]


@pytest.mark.parametrize("kept", ["response.created", "response.in_progress", "response.queued"])
def test_a_stream_with_one_lifecycle_start_keeps_the_answers_id(kept: str) -> None:
    """Any one start event carries the answer, whose id the message takes (a background
    answer's stream says `response.queued`)."""
    created, _in_progress, *rest = events(ANSWERS["text"])
    items = [{**created, "type": kept}, *rest]
    evs = anthropic_events(translate(sse(items)))
    assert evs[0]["message"]["id"] == "msg_resp_0a1b2c"
