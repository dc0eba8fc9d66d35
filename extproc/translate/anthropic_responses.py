"""Anthropic Messages ⇄ OpenAI Responses, sans-I/O.

OpenAI's Codex models answer only on `/v1/responses`, and there a reasoning model's encrypted
reasoning can travel between the calls of a tool loop. `translate_request` turns a Messages
body into a Responses body; `translate_response` and `StreamTranslator` turn the answer (JSON,
or the Responses event stream) back into what Claude Code expects. The encrypted reasoning
rides in the thinking block's `signature` (one of ours: `signatures.py`), so Claude Code sends
it back unchanged. Every rule is listed, with its reason, in docs/translation.md.

Tools, tool calls, tool results and media are built by the Chat Completions translator's
`chat_*` builders and reshaped here: the two APIs differ in the envelope, not the content.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from extproc.translate import errors, signatures
from extproc.translate.anthropic_format import (
    JSON,
    MALFORMED,
    TranslationError,
    anthropic_message_id,
    anthropic_tool_id,
    as_dict,
    as_list,
    block_text,
    content_blocks,
    hashed_user,
    is_custom_tool,
    plain_texts,
    reasoning_effort,
    session_id,
    system_texts,
    token_count,
    tool_input,
)
from extproc.translate.anthropic_openai import (
    chat_media_part,
    chat_response_format,
    chat_tool,
    chat_tool_call,
    chat_tool_choice,
    chat_tool_message,
)
from extproc.translate.contract import COMMON, Contract
from extproc.translate.stream import AnthropicStream

MIN_OUTPUT_TOKENS = 16
"""OpenAI refuses `max_output_tokens` below 16 (`integer_below_min_value`)."""


# ---------------------------------------------------------------------------------------------
# Request: Anthropic Messages → Responses
# ---------------------------------------------------------------------------------------------


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
    the provider and model (as the answer side was given it): only reasoning signed for it is
    sent back, as no other server could decrypt it.
    """
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list):
        raise TranslationError("messages: field required (a list)")
    instructions = system_texts(body.get("system"))
    items: list[JSON] = []
    for i, message in enumerate(raw_messages):
        if not isinstance(message, dict):
            raise TranslationError(f"messages.{i}: must be an object")
        role = message.get("role")
        content = message.get("content")
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
    user = hashed_user(body.get("metadata")) if contract.user_field else None
    if user:
        out["safety_identifier"] = user
    session = session_id(body.get("metadata")) if contract.prompt_cache_key else None
    if session:
        out["prompt_cache_key"] = session
    try:
        return orjson.dumps(out)
    except orjson.JSONEncodeError as exc:
        raise TranslationError(f"request can't be encoded as JSON: {exc}") from exc


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


def reasoning_item(block: JSON, origin: str = "") -> JSON | None:
    """Our thinking block back into the `reasoning` item it came from; None for any other
    (Anthropic's signatures mean nothing to OpenAI, another provider or model can't decrypt
    this one's reasoning, and with `store: false` an item without `encrypted_content` is
    refused)."""
    state = signatures.state(block.get("signature"))
    item_id, encrypted = state.get("reasoning_id"), state.get("encrypted_content")
    if not (isinstance(item_id, str) and item_id and isinstance(encrypted, str) and encrypted):
        return None
    if state.get("origin") != _origin_tag(origin):
        return None
    thinking = block.get("thinking")
    summary = [{"type": "summary_text", "text": thinking}] if thinking else []
    return {"type": "reasoning", "id": item_id, "summary": summary, "encrypted_content": encrypted}


def _signature(item: JSON, origin: str) -> str:
    """The signature that carries a reasoning item's encrypted content through Claude Code."""
    encrypted = item.get("encrypted_content")
    item_id = item.get("id")
    if isinstance(encrypted, str) and encrypted and isinstance(item_id, str) and item_id:
        state = {"reasoning_id": item_id, "encrypted_content": encrypted}
        return signatures.sign({**state, "origin": _origin_tag(origin)})
    return ""


def _origin_tag(origin: str) -> str:
    """A short stand-in for the origin (a URL and a model name) inside every signature."""
    return hashlib.blake2b(origin.encode(), digest_size=6).hexdigest()


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


# ---------------------------------------------------------------------------------------------
# Response: Responses → Anthropic Messages (shared by JSON and SSE)
# ---------------------------------------------------------------------------------------------

_INCOMPLETE = {"max_output_tokens": "max_tokens", "content_filter": "refusal"}


def _stop_reason(response: JSON, has_tools: bool) -> str:
    """`incomplete_details.reason` says why an answer stopped early; otherwise a finished turn,
    or a tool turn when it called functions (the Responses API has no finish_reason)."""
    if response.get("status") == "incomplete":
        reason = as_dict(response.get("incomplete_details")).get("reason")
        if reason in _INCOMPLETE:
            return _INCOMPLETE[reason]
    return "tool_use" if has_tools else "end_turn"


def _usage(usage: Any) -> JSON | None:
    """Responses usage → Anthropic usage; cache reads and writes are counted apart from input,
    as Anthropic does."""
    if not isinstance(usage, dict):
        return None
    details = as_dict(usage.get("input_tokens_details"))
    total = token_count(usage.get("input_tokens"))
    cached = token_count(details.get("cached_tokens"))
    created = token_count(details.get("cache_write_tokens"))
    return {
        "input_tokens": max(total - cached - created, 0),
        "output_tokens": token_count(usage.get("output_tokens")),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": created,
    }


def _reasoning_text(item: JSON) -> str:
    """Summary parts (OpenAI), or the raw reasoning text (open-weight models), joined."""
    parts = [p.get("text") for p in as_list(item.get("summary")) if isinstance(p, dict)]
    if not any(parts):
        parts = [p.get("text") for p in as_list(item.get("content")) if isinstance(p, dict)]
    return "\n\n".join(p for p in parts if isinstance(p, str) and p)


def _message_text(item: JSON) -> str:
    """Output text and refusals of a `message` item (a refusal is shown to the user)."""
    texts = []
    for part in as_list(item.get("content")):
        if isinstance(part, dict):
            value = part.get("text") if part.get("type") == "output_text" else part.get("refusal")
            if isinstance(value, str):
                texts.append(value)
    return "".join(texts)


def _failure(response: JSON) -> tuple[int, str, str]:
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
        client_status, kind, message = _failure(data)
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
            thinking, signature = _reasoning_text(item), _signature(item, origin)
            if thinking or signature:
                content.append({"type": "thinking", "thinking": thinking, "signature": signature})
        elif kind == "message":
            text = _message_text(item)
            if text:
                content.append({"type": "text", "text": text})
        elif kind == "function_call":
            content.append(
                {
                    "type": "tool_use",
                    "id": anthropic_tool_id(item.get("call_id"), message_id, calls),
                    "name": tool_names.get(item.get("name") or "", item.get("name") or ""),
                    "input": tool_input(item.get("arguments")),
                }
            )
            calls += 1
    usage = _usage(data.get("usage")) or {"input_tokens": 0, "output_tokens": 0}
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _stop_reason(data, calls > 0),
        "stop_sequence": None,
        "usage": {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, **usage},
    }


# ---------------------------------------------------------------------------------------------
# Stream: Responses events → Anthropic SSE
# ---------------------------------------------------------------------------------------------


@dataclass
class _Item:
    """One output item: one Anthropic block, buffered while an earlier item is still open."""

    kind: str  # "thinking" | "text" | "tool_use"
    tool_id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)  # sent (or waiting to be sent) so far
    streamed: bool = False  # at least one delta arrived for it
    done: JSON | None = None  # the finished item, once `response.output_item.done` came
    index: int = -1  # Anthropic block index once started


_KINDS = {"reasoning": "thinking", "message": "text", "function_call": "tool_use"}
_DELTAS = {
    "response.output_text.delta": "text",
    "response.refusal.delta": "text",
    "response.reasoning_summary_text.delta": "thinking",
    "response.reasoning_text.delta": "thinking",
    "response.function_call_arguments.delta": "tool_use",
}


class StreamTranslator(AnthropicStream):
    """Responses SSE bytes in, Anthropic SSE bytes out; split points don't matter.

    Each output item (reasoning, message, function call) becomes one block. Items arrive one
    after another; should an event for a later item come while an earlier one is open, it
    waits and is sent when its turn comes, so blocks stay sequential.
    """

    def __init__(
        self,
        *,
        model: str,
        message_id: str | None = None,
        input_tokens_estimate: int = 0,
        tool_names: dict[str, str] | None = None,
        origin: str = "",
    ) -> None:
        super().__init__(
            model=model,
            message_id=message_id,
            input_tokens_estimate=input_tokens_estimate,
            tool_names=tool_names,
        )
        self._origin = origin
        self._items: dict[int, _Item] = {}  # by output_index
        self._order: list[int] = []  # output indexes in arrival order
        self._open = 0  # position in _order of the item that streams live
        self._next_index = 0
        self._calls = 0

    # -- events ---------------------------------------------------------------------------

    def _cut(self) -> None:
        self._end({"status": "completed"})

    def _translate_whole(self, body: bytes) -> tuple[int, bytes]:
        return translate_response(
            200, body, model=self._model, tool_names=self._tool_names, origin=self._origin
        )

    def _event(self, name: bytes, payload: bytes) -> None:
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            if name == b"error":
                self._fail("api_error", payload.decode("utf-8", "replace"))
            return  # otherwise keep-alive noise from a proxy
        if not isinstance(event, dict):
            return
        try:
            self._dispatch(event)
        except MALFORMED as exc:  # a field of the wrong type: end the answer visibly
            self._fail("api_error", f"malformed event from upstream: {exc}")

    def _dispatch(self, event: JSON) -> None:
        kind = event.get("type")
        if kind == "error" or (kind is None and "error" in event):
            err = errors.error_object(event) or event
            self._fail(errors.type_of(err, 500), errors.message_of(err))
            return
        response = as_dict(event.get("response"))
        if kind in ("response.created", "response.in_progress", "response.queued"):
            self._start(response)
        elif kind == "response.output_item.added":
            self._start(response)
            self._added(event["output_index"], as_dict(event.get("item")))
        elif kind in _DELTAS:
            self._start(response)
            self._delta(event, _DELTAS[kind])
        elif kind == "response.reasoning_summary_part.added" and event.get("summary_index"):
            self._delta({**event, "delta": "\n\n"}, "thinking")
        elif kind == "response.output_item.done":
            self._start(response)
            self._item_done(event["output_index"], as_dict(event.get("item")))
        elif kind in ("response.completed", "response.incomplete"):
            self._start(response)
            self._end(response)
        elif kind == "response.failed":
            _, error_type, message = _failure(response)
            self._fail(error_type, message)

    def _start(self, response: JSON) -> None:
        if self._started:
            return
        self._started = True
        if self._message_id is None:
            self._message_id = anthropic_message_id(response.get("id"), orjson.dumps(response))
        message = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self._input_estimate,
                "output_tokens": 1,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        self._emit("message_start", {"type": "message_start", "message": message})

    # -- items ----------------------------------------------------------------------------

    def _item(self, output_index: int, kind: str) -> _Item:
        item = self._items.get(output_index)
        if item is None:
            item = _Item(kind)
            self._items[output_index] = item
            self._order.append(output_index)
        return item

    def _added(self, output_index: int, raw: JSON) -> None:
        kind = _KINDS.get(raw.get("type"))  # type: ignore[arg-type]
        if kind is None:
            return  # hosted tool calls (web search, ...) have no Anthropic block
        item = self._item(output_index, kind)
        if kind == "tool_use":
            item.tool_id = anthropic_tool_id(raw.get("call_id"), str(self._message_id), self._calls)
            name = raw.get("name") or ""
            item.name = self._tool_names.get(name, name)
            self._calls += 1
        self._advance()

    def _delta(self, event: JSON, kind: str) -> None:
        delta = event.get("delta")
        if not isinstance(delta, str) or not delta:
            return
        item = self._items.get(event["output_index"])
        if item is None or item.kind != kind or item.done is not None:
            return  # a delta for an item never announced, or already finished
        item.streamed = True
        item.parts.append(delta)
        if item.index >= 0:
            self._send_delta(item, delta)

    def _item_done(self, output_index: int, raw: JSON) -> None:
        item = self._items.get(output_index)
        if item is None:
            kind = _KINDS.get(raw.get("type"))  # type: ignore[arg-type]
            if kind is None:
                return
            self._added(output_index, raw)
            item = self._items[output_index]
        if not item.streamed:  # a server that sends only whole items
            whole = self._whole_text(item, raw)
            if whole:
                item.parts.append(whole)
                if item.index >= 0:
                    self._send_delta(item, whole)
        item.done = raw
        self._advance()

    @staticmethod
    def _whole_text(item: _Item, raw: JSON) -> str:
        if item.kind == "thinking":
            return _reasoning_text(raw)
        if item.kind == "text":
            return _message_text(raw)
        arguments = raw.get("arguments")
        return arguments if isinstance(arguments, str) else ""

    def _advance(self) -> None:
        """Start the item whose turn it is; close finished ones and move on."""
        while self._open < len(self._order):
            item = self._items[self._order[self._open]]
            if item.index < 0:
                self._start_block(item)
            if item.done is None:
                return
            self._close(item)
            self._open += 1

    def _start_block(self, item: _Item) -> None:
        item.index = self._next_index
        self._next_index += 1
        if item.kind == "text":
            start: JSON = {"type": "text", "text": ""}
        elif item.kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
        else:
            start = {"type": "tool_use", "id": item.tool_id, "name": item.name, "input": {}}
        self._emit(
            "content_block_start",
            {"type": "content_block_start", "index": item.index, "content_block": start},
        )
        if item.parts:
            self._send_delta(item, "".join(item.parts))

    def _send_delta(self, item: _Item, text: str) -> None:
        self._chars += len(text)
        if item.kind == "text":
            delta: JSON = {"type": "text_delta", "text": text}
        elif item.kind == "thinking":
            delta = {"type": "thinking_delta", "thinking": text}
        else:
            delta = {"type": "input_json_delta", "partial_json": text}
        self._emit(
            "content_block_delta",
            {"type": "content_block_delta", "index": item.index, "delta": delta},
        )

    def _close(self, item: _Item) -> None:
        signature = _signature(item.done or {}, self._origin) if item.kind == "thinking" else ""
        if signature:
            self._emit(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": item.index,
                    "delta": {"type": "signature_delta", "signature": signature},
                },
            )
        self._emit("content_block_stop", {"type": "content_block_stop", "index": item.index})

    def _end(self, response: JSON) -> None:
        """Close every block, then message_delta (stop reason, usage) and message_stop."""
        for output_index in self._order[self._open :]:
            item = self._items[output_index]
            if item.done is None:
                item.done = {}
        self._advance()
        self._usage = _usage(response.get("usage")) or self._usage
        usage = self._usage or {"output_tokens": math.ceil(self._chars / 4)}
        stop = {"stop_reason": _stop_reason(response, self._calls > 0), "stop_sequence": None}
        self._emit("message_delta", {"type": "message_delta", "delta": stop, "usage": usage})
        self._emit("message_stop", {"type": "message_stop"})
        self._done = True
