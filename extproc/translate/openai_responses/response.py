"""OpenAI Responses → Anthropic Messages: a whole answer, and the readings of an answer's
fields (stop reason, usage, reasoning and message texts, failure) the stream shares.
"""

from __future__ import annotations

from typing import Any

import orjson

from extproc.translate import errors
from extproc.translate.anthropic_format import (
    JSON,
    MALFORMED,
    anthropic_message,
    anthropic_message_id,
    anthropic_tool_id,
    as_dict,
    as_list,
    tool_input,
    tool_name,
    usage_counts,
)
from extproc.translate.openai_responses.reasoning import reasoning_signature

_INCOMPLETE = {"max_output_tokens": "max_tokens", "content_filter": "refusal"}


def anthropic_stop(response: JSON, has_tools: bool) -> str:
    """`incomplete_details.reason` says why an answer stopped early; otherwise a finished turn,
    or a tool turn when it called functions (the Responses API has no finish_reason)."""
    if response.get("status") == "incomplete":
        reason = as_dict(response.get("incomplete_details")).get("reason")
        if reason in _INCOMPLETE:
            return _INCOMPLETE[reason]
    return "tool_use" if has_tools else "end_turn"


def anthropic_usage(usage: Any) -> JSON | None:
    """Responses usage → Anthropic usage."""
    if not isinstance(usage, dict):
        return None
    details = as_dict(usage.get("input_tokens_details"))
    return usage_counts(
        usage.get("input_tokens"),
        usage.get("output_tokens"),
        cached=details.get("cached_tokens"),
        created=details.get("cache_write_tokens"),
    )


def reasoning_text(item: JSON) -> str:
    """Summary parts (OpenAI), or the raw reasoning text (open-weight models), joined."""
    parts = [p.get("text") for p in as_list(item.get("summary")) if isinstance(p, dict)]
    if not any(parts):
        parts = [p.get("text") for p in as_list(item.get("content")) if isinstance(p, dict)]
    return "\n\n".join(p for p in parts if isinstance(p, str) and p)


def message_text(item: JSON) -> str:
    """Output text and refusals of a `message` item (a refusal is shown to the user)."""
    texts = []
    for part in as_list(item.get("content")):
        if isinstance(part, dict):
            value = part.get("text") if part.get("type") == "output_text" else part.get("refusal")
            if isinstance(value, str):
                texts.append(value)
    return "".join(texts)


def failure(response: JSON) -> tuple[int, str, str]:
    """(status, Anthropic type, message) for a failed response."""
    err = as_dict(response.get("error")) or {"message": "the response failed"}
    kind = errors.type_of(err, 500)
    return errors.status_for_type(kind), kind, errors.message_of(err)


def translate_response(
    status: int,
    body: bytes,
    *,
    model: str,
    tool_names: dict[str, str] | None = None,
    origin: str = "",
) -> tuple[int, bytes]:
    """A non-streamed upstream answer → (status for the client, Anthropic JSON bytes).

    `tool_names` maps the tool names sent to the provider back to the client's; `origin` is
    what reasoning is signed for (see `translate_request`).
    """
    try:
        data = errors.answer_json(status, body)
    except errors.UnusableAnswer as exc:
        return exc.reply
    if not isinstance(data, dict) or not isinstance(data.get("output"), list):
        err = errors.error_object(data)
        if err is not None:
            kind = errors.type_of(err, 502)
            return errors.status_of(err, 502), errors.error_body(kind, errors.message_of(err))
        return 502, errors.error_body("api_error", "upstream answer has no output")
    if data.get("status") == "failed" or data.get("error"):
        client_status, kind, message = failure(data)
        return client_status, errors.error_body(kind, message)
    try:
        return status, orjson.dumps(_message(data, model, body, tool_names or {}, origin))
    except MALFORMED as exc:
        return 502, errors.error_body("api_error", f"malformed answer from upstream: {exc}")


def _message(data: JSON, model: str, body: bytes, tool_names: dict[str, str], origin: str) -> JSON:
    message_id = anthropic_message_id(data.get("id"), body)
    content: list[JSON] = []
    calls = 0
    for item in data["output"]:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "reasoning":
            thinking, signature = reasoning_text(item), reasoning_signature(item, origin)
            if thinking or signature:
                content.append({"type": "thinking", "thinking": thinking, "signature": signature})
        elif kind == "message":
            text = message_text(item)
            if text:
                content.append({"type": "text", "text": text})
        elif kind == "function_call":
            content.append(
                {
                    "type": "tool_use",
                    "id": anthropic_tool_id(item.get("call_id"), message_id, calls),
                    "name": tool_name(item.get("name"), tool_names),
                    "input": tool_input(item.get("arguments")),
                }
            )
            calls += 1
    usage = anthropic_usage(data.get("usage")) or {"input_tokens": 0, "output_tokens": 0}
    usage = {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, **usage}
    return anthropic_message(message_id, model, content, usage, anthropic_stop(data, calls > 0))
