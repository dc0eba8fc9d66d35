"""The OpenAI side both translators share: tools, tool calls, tool results, media and
structured output in Chat Completions shape, and the tool names a provider accepts.

The Chat Completions translator sends these as they are; the Responses translator reshapes
them, as the two APIs differ in the envelope, not the content.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from extproc.config.contract import Contract
from extproc.translate.anthropic_format import (
    BAD_ID_CHARS,
    JSON,
    TranslationError,
    as_dict,
    as_list,
    block_text,
    hashed_user,
    output_config,
    session_id,
)


def caller_fields(body: JSON, contract: Contract, user_field: str) -> JSON:
    """Who asks, where the contract lets it through: the hashed user id under the API's name
    for it (`user_field`), and Claude Code's session id as `prompt_cache_key`."""
    out: JSON = {}
    user = hashed_user(body.get("metadata")) if contract.user_field else None
    if user:
        out[user_field] = user
    session = session_id(body.get("metadata")) if contract.prompt_cache_key else None
    if session:
        out["prompt_cache_key"] = session
    return out


def encode_request(out: JSON) -> bytes:
    """The translated request as JSON bytes; a value JSON can't hold is the client's error."""
    try:
        return orjson.dumps(out)
    except orjson.JSONEncodeError as exc:
        raise TranslationError(f"request can't be encoded as JSON: {exc}") from exc


def chat_media_part(block: JSON, where: str, contract: Contract) -> JSON | None:
    """An image, or a PDF where the API takes files, as a content part; None for the rest."""
    source = as_dict(block.get("source"))
    if block.get("type") == "image" and contract.images:
        if source.get("type") == "base64":
            url = f"data:{source.get('media_type')};base64,{source.get('data')}"
        elif source.get("type") == "url":
            url = source.get("url")
        else:
            message = f"{where}.source: image source {source.get('type')!r} unsupported"
            raise TranslationError(message)
        return {"type": "image_url", "image_url": {"url": url}}
    if (
        block.get("type") == "document"
        and contract.file_parts
        and source.get("type") == "base64"
        and source.get("media_type") == "application/pdf"
    ):
        title = block.get("title")
        filename = title if isinstance(title, str) and title else "document.pdf"
        data = f"data:application/pdf;base64,{source.get('data')}"
        return {"type": "file", "file": {"filename": filename, "file_data": data}}
    return None


def chat_tool_message(block: JSON, where: str, contract: Contract) -> tuple[JSON, list[JSON]]:
    """A tool_result as a `tool` message (text only), and the images and files it held, which
    the caller sends in the user message that follows; the text marks where they stood."""
    content = block.get("content")
    media: list[JSON] = []
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts = []
        for k, item in enumerate(content):
            if not isinstance(item, dict):
                raise TranslationError(f"{where}.content.{k}: must be an object")
            part = chat_media_part(item, f"{where}.content.{k}", contract)
            if part is not None:
                media.append(part)
                texts.append("[image]" if part["type"] == "image_url" else "[document]")
            elif item.get("type") == "tool_reference":
                texts.append(f"[tool: {item.get('tool_name', '')}]")
            else:
                piece = block_text(item, f"{where}.content.{k}")
                if piece is not None:
                    texts.append(piece)
        text = "\n\n".join(texts)
    else:
        raise TranslationError(f"{where}.content: must be a string or a list of blocks")
    if block.get("is_error"):
        text = f"Error: {text}"
    tool_call_id = str(block.get("tool_use_id", ""))
    return {"role": "tool", "tool_call_id": tool_call_id, "content": text}, media


def chat_tool_call(block: JSON, where: str, contract: Contract) -> JSON:
    name = block.get("name")
    if not isinstance(name, str) or not name:
        raise TranslationError(f"{where}.name: a tool_use block needs a name")
    try:
        arguments = orjson.dumps(block.get("input", {})).decode()
    except orjson.JSONEncodeError as exc:
        raise TranslationError(f"{where}.input: {exc}") from exc
    return {
        "id": str(block.get("id", "")),
        "type": "function",
        "function": {
            "name": provider_tool_name(name, contract.tool_name_max),
            "arguments": arguments,
        },
    }


def chat_tool(tool: JSON, contract: Contract) -> JSON:
    if not isinstance(tool.get("name"), str) or not tool["name"]:
        raise TranslationError("tools: every tool needs a name")
    function: JSON = {"name": provider_tool_name(tool["name"], contract.tool_name_max)}
    if tool.get("description"):
        function["description"] = tool["description"]
    function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def provider_tool_name(name: str, limit: int) -> str:
    """The name a provider accepts for tool `name`: itself when it fits the OpenAI pattern and
    `limit`, else a cleaned prefix and a hash of the whole (stable, so a call in the history
    and the tool it calls keep one name). `tool_names` maps them back in the answer."""
    if len(name) <= limit and _TOOL_NAME.match(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{BAD_ID_CHARS.sub('_', name)[: limit - 9]}_{digest}"


def tool_names(body: JSON, contract: Contract) -> dict[str, str]:
    """Provider name → original for every tool name of the request that had to change.

    Two of the request's names (its tools', its history's calls') that the provider would
    see as one are refused (TranslationError): a long name and a tool literally named as its
    shortened form, or two long names whose prefixes and 8-hex digests agree. The provider
    would get two functions of one name, and every call to either would come back as one.
    """
    names = [t.get("name") for t in as_list(body.get("tools")) if isinstance(t, dict)]
    for message in as_list(body.get("messages")):
        for block in as_list(message.get("content") if isinstance(message, dict) else None):
            if isinstance(block, dict) and block.get("type") == "tool_use":
                names.append(block.get("name"))
    sent: dict[str, str] = {}
    for name in names:
        if isinstance(name, str) and name:
            short = provider_tool_name(name, contract.tool_name_max)
            other = sent.setdefault(short, name)
            if other != name:
                raise TranslationError(
                    f"tools: {other!r} and {name!r} would both reach the provider as {short!r} "
                    f"(tool names longer than {contract.tool_name_max} characters, or with "
                    "characters other than A-Z a-z 0-9 _ -, are shortened); rename one of them"
                )
    return {short: name for short, name in sent.items() if short != name}


def chat_tool_choice(choice: Any, offered: set[str], contract: Contract) -> JSON:
    """`offered`: the tools' names as sent; a choice of a tool that was dropped is dropped."""
    if not isinstance(choice, dict):
        return {}
    out: JSON = {}
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str) and choice["name"]:
        name = provider_tool_name(choice["name"], contract.tool_name_max)
        if name in offered:
            out["tool_choice"] = {"type": "function", "function": {"name": name}}
    if choice.get("disable_parallel_tool_use") and kind != "none":
        out["parallel_tool_calls"] = False
    return out


def chat_response_format(body: JSON) -> JSON | None:
    """Structured output (`output_config.format`, or the older beta `output_format`)."""
    fmt = output_config(body).get("format") or body.get("output_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = fmt.get("schema") or {}
        return {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": False},
        }
    return None
