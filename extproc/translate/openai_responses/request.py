"""Anthropic Messages → OpenAI Responses: the request side of the Responses translator.

An allow-list like the Chat Completions translator's; every rule is listed, with its
reason, in docs/translation.md.
"""

from __future__ import annotations

from typing import Any

from extproc.config.contract import COMMON, Contract
from extproc.translate.anthropic_format import (
    JSON,
    TranslationError,
    as_list,
    block_text,
    content_blocks,
    is_custom_tool,
    plain_texts,
    reasoning_effort,
    request_messages,
    system_texts,
)
from extproc.translate.openai_format import (
    caller_fields,
    chat_media_part,
    chat_response_format,
    chat_tool,
    chat_tool_call,
    chat_tool_choice,
    chat_tool_message,
    encode_request,
    tool_names,
)
from extproc.translate.openai_responses.reasoning import reasoning_item

MIN_OUTPUT_TOKENS = 16
"""OpenAI refuses `max_output_tokens` below 16 (`integer_below_min_value`)."""


def translate_request(
    body: JSON,
    *,
    model: str,
    contract: Contract = COMMON,
    max_tokens_cap: int | None = None,
    origin: str = "",
) -> bytes:
    """Anthropic Messages body (parsed) → Responses JSON bytes for `model`.

    An allow-list like the Chat Completions translator's, under the same `contract` (reasoning,
    tool-name length, PDFs, prompt_cache_key, user). `store: false` always: the gateway keeps
    no state, so reasoning travels encrypted inside the conversation instead. `origin` names
    the provider entry and account (`reasoning_origin`, as the answer side was given it):
    only reasoning signed for it is sent back, as no other server could decrypt it and no
    other account may read it.
    """
    raw_messages = request_messages(body)
    tool_names(body, contract)  # refuses two tools the provider would see as one
    instructions = system_texts(body.get("system"))
    items: list[JSON] = []
    for i, role, content in raw_messages:
        if role == "system":
            instructions.append("\n\n".join(plain_texts(content, f"messages.{i}.content")))
        elif role == "user":
            items.extend(_user_items(content_blocks(content, i), i, contract))
        elif role == "assistant":
            items.extend(_assistant_items(content_blocks(content, i), i, contract, origin))
        else:
            raise TranslationError(f"messages.{i}.role: unexpected value {role!r}")

    out: JSON = {"model": model}
    instructions = [s for s in instructions if s]
    if instructions:
        out["instructions"] = "\n\n".join(instructions)
    out["input"] = items
    tools = [_function_tool(t, contract) for t in as_list(body.get("tools")) if is_custom_tool(t)]
    if tools:
        out["tools"] = tools
        offered = {t["name"] for t in tools}
        out.update(_responses_tool_choice(body.get("tool_choice"), offered, contract))
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int):
        capped = min(max_tokens, max_tokens_cap) if max_tokens_cap else max_tokens
        out["max_output_tokens"] = max(capped, MIN_OUTPUT_TOKENS)
    if contract.reasoning:
        # The Responses API takes the effort beside function tools (Chat Completions, for
        # newer GPT-5 models, does not: the contract's tools_effort is about that wire).
        effort = reasoning_effort(body, contract, tools=False)
        if effort:
            summary = {"summary": "auto"} if contract.reasoning_summaries else {}
            out["reasoning"] = {"effort": effort, **summary}
        # Even with thinking off the model reasons; its reasoning still travels.
        out["include"] = ["reasoning.encrypted_content"]
    else:  # reasoning models refuse sampling parameters
        for key in ("temperature", "top_p"):
            if body.get(key) is not None:
                out[key] = body[key]
    text_format = _text_format(body)
    if text_format:
        out["text"] = {"format": text_format}
    out["store"] = False
    if body.get("stream"):
        out["stream"] = True
    out.update(caller_fields(body, contract, user_field="safety_identifier"))
    return encode_request(out)


def _user_items(blocks: list[JSON], i: int, contract: Contract) -> list[JSON]:
    """Tool results first (as `function_call_output` items), then the rest as one message."""
    outputs: list[JSON] = []
    parts: list[JSON] = []
    for j, block in enumerate(blocks):
        where = f"messages.{i}.content.{j}"
        kind = block.get("type")
        if kind == "tool_result":
            outputs.append(_function_call_output(block, where, contract))
        elif (media := chat_media_part(block, where, contract)) is not None:
            parts.append(_input_part(media))
        else:
            text = block_text(block, where)
            if text is not None:
                parts.append({"type": "input_text", "text": text})
    if not parts:
        return outputs
    return [*outputs, {"type": "message", "role": "user", "content": parts}]


def _input_part(media: JSON) -> JSON:
    """A Chat Completions image or file part as the Responses input part."""
    if media["type"] == "image_url":
        return {"type": "input_image", "image_url": media["image_url"]["url"], "detail": "auto"}
    return {"type": "input_file", **media["file"]}


def _function_call_output(block: JSON, where: str, contract: Contract) -> JSON:
    """A tool_result as a `function_call_output`: its text, or, when it holds images or PDFs
    (a screenshot a tool read), the text (marking where they stood) and then those parts."""
    message, media = chat_tool_message(block, where, contract)
    output: str | list[JSON] = message["content"]
    if media:
        output = [{"type": "input_text", "text": message["content"]}, *map(_input_part, media)]
    return {"type": "function_call_output", "call_id": message["tool_call_id"], "output": output}


def _assistant_items(blocks: list[JSON], i: int, contract: Contract, origin: str) -> list[JSON]:
    """One item per block, in order: our reasoning, text (consecutive texts as one message),
    function calls. Thinking that another provider wrote, and anything OpenAI can't read back,
    is dropped."""
    items: list[JSON] = []
    texts: list[str] = []

    def flush_text() -> None:
        if texts:
            text = "\n\n".join(texts)
            items.append({"type": "message", "role": "assistant", "content": text})
            texts.clear()

    for j, block in enumerate(blocks):
        where = f"messages.{i}.content.{j}"
        kind = block.get("type")
        if kind == "tool_use":
            flush_text()
            call = chat_tool_call(block, where, contract)
            items.append(
                {
                    "type": "function_call",
                    "call_id": call["id"],
                    "name": call["function"]["name"],
                    "arguments": call["function"]["arguments"],
                }
            )
        elif kind == "thinking":
            reasoning = reasoning_item(block, origin)
            if reasoning is not None:
                flush_text()
                items.append(reasoning)
        else:
            text = block_text(block, where)
            if text is not None:
                texts.append(text)
    flush_text()
    return items


def _function_tool(tool: JSON, contract: Contract) -> JSON:
    """A custom tool as a Responses function tool. `strict: false`: the API defaults to strict
    schemas, which make every optional parameter of Claude Code's tools required, or refuse
    the schema."""
    function = chat_tool(tool, contract)["function"]
    return {"type": "function", **function, "strict": False}


def _responses_tool_choice(choice: Any, offered: set[str], contract: Contract) -> JSON:
    out = chat_tool_choice(choice, offered, contract)
    forced = out.get("tool_choice")
    if isinstance(forced, dict):
        out["tool_choice"] = {"type": "function", "name": forced["function"]["name"]}
    return out


def _text_format(body: JSON) -> JSON | None:
    """Structured output, as Chat Completions' `response_format` would carry it, flattened."""
    response_format = chat_response_format(body)
    if response_format is None:
        return None
    return {"type": "json_schema", **response_format["json_schema"]}
