"""Chat Completions → Anthropic Messages: a whole answer, and the readings of an answer's
fields (stop reason, usage, content parts, reasoning, thought signatures) the stream shares.
"""

from __future__ import annotations

from typing import Any

import orjson

from extproc.translate import errors, signatures
from extproc.translate.anthropic_format import (
    JSON,
    MALFORMED,
    anthropic_message,
    anthropic_message_id,
    anthropic_tool_id,
    as_dict,
    tool_input,
    tool_name,
    usage_counts,
)

_FINISH = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def anthropic_stop(finish_reason: Any, matched: Any, has_tools: bool) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence). vLLM names the matched stop string in `stop_reason`;
    some providers say "stop" for an answer that calls tools."""
    if finish_reason == "stop" and isinstance(matched, str) and matched:
        return "stop_sequence", matched
    reason = (
        _FINISH.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"
    )
    if has_tools and reason == "end_turn":
        reason = "tool_use"
    return reason, None


def anthropic_usage(usage: Any) -> JSON | None:
    """Chat Completions usage → Anthropic usage (some servers report fractional counts)."""
    if not isinstance(usage, dict):
        return None
    details = as_dict(usage.get("prompt_tokens_details"))
    return usage_counts(
        usage.get("prompt_tokens"),
        usage.get("completion_tokens"),
        cached=details.get("cached_tokens"),
        created=details.get("cache_creation_tokens"),
    )


def content_parts(content: Any) -> list[tuple[str, str]]:
    """(kind, text) pieces of a content field: a string, or Mistral-style typed chunks."""
    if isinstance(content, str):
        return [("text", content)] if content else []
    out: list[tuple[str, str]] = []
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            out.append(("text", part["text"]))
        elif part.get("type") == "thinking":
            inner = part.get("thinking")
            if isinstance(inner, list):
                inner = "".join(i.get("text", "") for i in inner if isinstance(i, dict))
            if isinstance(inner, str):
                out.append(("thinking", inner))
    return [p for p in out if p[1]]


def reasoning_text(message: JSON) -> str:
    """DeepSeek/vLLM say `reasoning_content`; OpenRouter/Ollama/newer vLLM say `reasoning`."""
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def thought_signature(call: JSON) -> str | None:
    """Gemini's `extra_content.google.thought_signature` on a tool call, if any."""
    google = as_dict(as_dict(call.get("extra_content")).get("google"))
    signature = google.get("thought_signature")
    return signature if isinstance(signature, str) and signature else None


def signature_block(tool_id: str, thought_signature: str) -> JSON:
    """A thinking block that carries a tool call's thought signature through Claude Code."""
    state = {"tool_use_id": tool_id, "thought_signature": thought_signature}
    return {"type": "thinking", "thinking": "", "signature": signatures.sign(state)}


def translate_response(
    status: int, body: bytes, *, model: str, tool_names: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """A non-streamed upstream answer → (status for the client, Anthropic JSON bytes).

    `tool_names` maps the tool names sent to the provider back to the client's (`tool_names`).
    """
    try:
        data = errors.answer_json(status, body)
    except errors.UnusableAnswer as exc:
        return exc.reply
    err = errors.error_object(data)
    if err is not None:
        client_status = errors.status_of(err, 502)
        return client_status, errors.error_body(errors.type_of(err, 502), errors.message_of(err))
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return 502, errors.error_body("api_error", "upstream answer has no choices")
    try:
        return status, orjson.dumps(_message(data, choices[0], model, body, tool_names or {}))
    except MALFORMED as exc:
        return 502, errors.error_body("api_error", f"malformed answer from upstream: {exc}")


def _message(data: JSON, choice: JSON, model: str, body: bytes, tool_names: dict[str, str]) -> JSON:
    message = choice.get("message") or {}
    content: list[JSON] = []
    reasoning = reasoning_text(message)
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    for kind, text in content_parts(message.get("content")):
        if kind == "thinking":
            content.append({"type": "thinking", "thinking": text, "signature": ""})
        else:
            content.append({"type": "text", "text": text})
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        content.append({"type": "text", "text": message["refusal"]})
    message_id = anthropic_message_id(data.get("id"), body)
    calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
    for n, call in enumerate(calls):
        function = call.get("function") or {}
        tool_id = anthropic_tool_id(call.get("id"), message_id, n)
        signature = thought_signature(call)
        if signature:
            content.append(signature_block(tool_id, signature))
        content.append(
            {
                "type": "tool_use",
                "id": tool_id,
                "name": tool_name(function.get("name"), tool_names),
                "input": tool_input(function.get("arguments")),
            }
        )
    stop_reason, stop_sequence = anthropic_stop(
        choice.get("finish_reason"), choice.get("stop_reason"), bool(calls)
    )
    usage = anthropic_usage(data.get("usage")) or {"input_tokens": 0, "output_tokens": 0}
    usage = {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, **usage}
    return anthropic_message(message_id, model, content, usage, stop_reason, stop_sequence)
