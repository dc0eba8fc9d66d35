"""Fakes of today's OpenAI-format providers that refuse what the real APIs refuse.

Each `Profile` is one provider (and model family) as its documentation describes it: where it
listens, how it authenticates, how its errors and streams look, and the `Rule`s it enforces.
docs/translation.md#provider-contracts names the documentation behind every rule.

Every fake plays the same tool loop, so one real Claude Code session can be run against each:
a user message containing "LOOP" gets a call of `Bash` running `echo STEP-1`; once a tool result
holding STEP-1 is in the history, a call for STEP-2; once STEP-2 is there, the final answer
"loop done after STEP-1 and STEP-2". Profiles with `parallel_at_index_0` (Ollama) ask for both
steps at once, as two calls that share `index: 0`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.fake_anthropic import prompt_tokens, write_chunked
from tests.support.fake_server import FakeServer, openai_failure, send_json

JSON = dict[str, Any]
FINAL = "loop done after STEP-1 and STEP-2"
OPENAI_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MISTRAL_ID = re.compile(r"^[a-zA-Z0-9]{9}$")
CHAT_PARAMS = {
    "model", "messages", "audio", "frequency_penalty", "function_call", "functions",
    "logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "metadata", "modalities",
    "n", "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key",
    "prompt_cache_retention", "reasoning_effort", "response_format", "safety_identifier", "seed",
    "service_tier", "stop", "store", "stream", "stream_options", "temperature", "tool_choice",
    "tools", "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
}  # fmt: skip
"""OpenAI's Chat Completions parameters (API reference, 2026-11)."""


GOOGLE_FAILURES = {
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
}
MISTRAL_RATE_LIMITED = {
    "object": "error",
    "message": "Requests rate limit exceeded",
    "type": "rate_limited",
    "param": None,
    "code": "1300",
}


@dataclass(frozen=True)
class Rule:
    """One documented refusal: `check` returns what the provider would say, or None."""

    name: str
    check: Callable[[JSON, FakeProvider], str | None]
    status: int = 400
    code: str | None = None
    """The error's `code` in an OpenAI-style body."""


def context_window(request: JSON, fake: FakeProvider) -> str | None:
    """Each provider's own refusal of a prompt over its model's window. OpenAI-style APIs count
    the requested completion too; Gemini and Mistral count the prompt alone."""
    profile = fake.profile
    prompt = prompt_tokens(request)
    completion = request.get("max_completion_tokens") or request.get("max_tokens") or 0
    window = profile.window
    if not window:
        return None
    if profile.kind in ("gemini", "mistral") and prompt > window:
        if profile.kind == "gemini":
            return f"The input token count ({prompt}) exceeds the maximum number of tokens allowed ({window})."
        return f"Prompt contains {prompt} tokens, too large for model with {window} maximum context length"
    if profile.kind in ("gemini", "mistral") or prompt + completion <= window:
        return None
    if profile.kind == "moonshot":
        return (
            f"Your request exceeded model token limit: {window} (requested: {prompt + completion})"
        )
    return (
        f"This model's maximum context length is {window} tokens. However, you requested "
        f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the "
        "completion). Please reduce the length of the messages or completion."
    )


WINDOW_RULE = Rule("context-window", context_window, code="context_length_exceeded")


def _assistant_calls(request: JSON) -> list[JSON]:
    return [
        m
        for m in request.get("messages", [])
        if m.get("role") == "assistant" and m.get("tool_calls")
    ]


def function_names(request: JSON, _: FakeProvider) -> str | None:
    names = [t["function"]["name"] for t in request.get("tools", [])]
    names += [c["function"]["name"] for m in _assistant_calls(request) for c in m["tool_calls"]]
    bad = next((n for n in names if not OPENAI_NAME.match(n)), None)
    if bad is None:
        return None
    return f"Invalid 'tools[0].function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]{{1,64}}$', got {bad!r}."


def tool_messages_answer_calls(request: JSON, _: FakeProvider) -> str | None:
    waiting: set[str] = set()
    for message in request.get("messages", []):
        if message.get("role") == "tool":
            if message.get("tool_call_id") not in waiting:
                return "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'."
            waiting.discard(message["tool_call_id"])
            continue
        if waiting:
            return "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'."
        if message.get("role") == "assistant":
            waiting = {c["id"] for c in message.get("tool_calls") or ()}
    return None


def known_parameters(request: JSON, _: FakeProvider) -> str | None:
    unknown = sorted(set(request) - CHAT_PARAMS)
    return f"Unrecognized request argument supplied: {unknown[0]}" if unknown else None


def no_max_tokens(request: JSON, _: FakeProvider) -> str | None:
    if "max_tokens" in request:
        return "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."
    return None


def no_reasoning_effort(request: JSON, _: FakeProvider) -> str | None:
    if "reasoning_effort" in request:
        return "Unsupported parameter: 'reasoning_effort' is not supported with this model."
    return None


def no_effort_with_tools(request: JSON, _: FakeProvider) -> str | None:
    """GPT-5.2 and later over Chat Completions: function tools and reasoning don't mix."""
    if request.get("tools") and request.get("reasoning_effort", "none") != "none":
        return (
            f"Function tools with reasoning_effort are not supported for {request['model']} in "
            "/v1/chat/completions. Please use /v1/responses instead."
        )
    return None


def effort_none_with_tools(request: JSON, fake: FakeProvider) -> str | None:
    """GPT-5.6: with function tools, reasoning must be switched off explicitly."""
    if request.get("tools") and request.get("reasoning_effort") != "none":
        return no_effort_with_tools({**request, "reasoning_effort": "medium"}, fake)
    return None


def thought_signatures(request: JSON, fake: FakeProvider) -> str | None:
    """Gemini 3 validates the signature of the first call of each step of the current turn."""
    for position, message in enumerate(request.get("messages", [])):
        if message.get("role") != "assistant" or not message.get("tool_calls"):
            continue
        first = message["tool_calls"][0]
        signature = (first.get("extra_content") or {}).get("google", {}).get("thought_signature")
        issued = fake.issued.get(first["id"])
        if signature is None or (issued is not None and signature != issued):
            return (
                "Function call is missing a thought_signature in functionCall parts. This is "
                "required for tools to work correctly, and missing thought_signature may lead "
                f"to degraded model performance. Additional data, function call "
                f"`default_api:{first['function']['name']}` , position {position + 1}."
            )
    return None


def reasoning_content_returned(request: JSON, fake: FakeProvider) -> str | None:
    """DeepSeek and Kimi thinking modes: each tool-call turn comes back with its reasoning."""
    for message in _assistant_calls(request):
        returned = message.get("reasoning_content")
        issued = fake.issued.get(message["tool_calls"][0]["id"])
        if not isinstance(returned, str) or (issued is not None and returned != issued):
            return "Missing `reasoning_content` field in the assistant message at message index 1. For more information, please refer to the thinking mode documentation."
    return None


def mistral_ids(request: JSON, _: FakeProvider) -> str | None:
    ids = [c["id"] for m in _assistant_calls(request) for c in m["tool_calls"]]
    ids += [m["tool_call_id"] for m in request.get("messages", []) if m.get("role") == "tool"]
    bad = next((i for i in ids if not MISTRAL_ID.match(i)), None)
    if bad is None:
        return None
    return f"Tool call id was {bad} but must be a-z, A-Z, 0-9, with a length of 9."


MISTRAL_PARAMS = {
    "model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed",
    "response_format", "tools", "tool_choice", "presence_penalty", "frequency_penalty", "n",
    "prediction", "parallel_tool_calls", "prompt_mode", "safe_prompt",
}  # fmt: skip
"""Mistral's chat completion body (API reference); anything else is a 422."""


MISTRAL_MESSAGE_FIELDS = {"role", "content", "tool_calls", "tool_call_id", "name", "prefix"}


def mistral_fields(request: JSON, _: FakeProvider) -> str | None:
    unknown = sorted(set(request) - MISTRAL_PARAMS)
    if unknown:
        return f"body.{unknown[0]}: Extra inputs are not permitted"
    for i, message in enumerate(request.get("messages", [])):
        extra = sorted(set(message) - MISTRAL_MESSAGE_FIELDS)
        if extra:
            return f"body.messages.{i}.{message.get('role')}.{extra[0]}: Extra inputs are not permitted"
    return None


def groq_unsupported(request: JSON, _: FakeProvider) -> str | None:
    """Groq's OpenAI compatibility page lists what it refuses."""
    for key in ("logprobs", "logit_bias", "top_logprobs"):
        if key in request:
            return f"'{key}' : property '{key}' is unsupported"
    if request.get("n", 1) != 1:
        return "'n' : number must be at most 1"
    for i, message in enumerate(request.get("messages", [])):
        if "name" in message:
            return f"'messages.{i}' : property 'name' is unsupported"
    return None


def xai_reasoning(request: JSON, _: FakeProvider) -> str | None:
    """xAI: grok-4 refuses reasoning_effort, and stop/penalties, as a reasoning model."""
    for key in ("reasoning_effort", "stop", "presence_penalty", "frequency_penalty"):
        if key in request:
            return f"Argument not supported on this model: {key}"
    return None


COMMON_RULES = (
    Rule("function-name-pattern", function_names),
    Rule("tool-messages-answer-calls", tool_messages_answer_calls),
)
THINKING_RULES = (*COMMON_RULES, Rule("reasoning-content-returned", reasoning_content_returned))


@dataclass(frozen=True)
class Profile:
    """One provider's wire contract, as documented."""

    kind: str
    model: str
    path: str = "/v1/chat/completions"
    key: str | None = "sk-strict-test"
    rules: tuple[Rule, ...] = ()
    error_style: str = "openai"  # "openai" | "google" (a list) | "mistral"
    reasoning_field: str | None = None  # streams its thinking under this delta key
    signatures: bool = False  # Gemini 3: extra_content.google.thought_signature
    parallel_at_index_0: bool = False  # Ollama
    short_ids: bool = False  # Mistral's 9-character ids
    groq_usage: bool = False  # usage in x_groq on the last chunk
    done_marker: bool = True  # Gemini's endpoint may close without [DONE]
    window: int = 0
    """The model's context window in the fake's tokens (`prompt_tokens`); a longer prompt is
    refused with the provider's error, or, for Ollama (`num_ctx`), cut as Ollama cuts it."""

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.model}"


PROFILES: tuple[Profile, ...] = (
    Profile(
        "openai",
        "gpt-5.2",
        rules=(
            *COMMON_RULES,
            Rule("known-parameters", known_parameters),
            Rule("no-max-tokens", no_max_tokens),
            Rule("no-effort-with-tools", no_effort_with_tools),
        ),
        window=400_000,
    ),
    Profile(
        "openai",
        "gpt-5.6",
        rules=(
            *COMMON_RULES,
            Rule("known-parameters", known_parameters),
            Rule("no-max-tokens", no_max_tokens),
            Rule("effort-none-with-tools", effort_none_with_tools),
        ),
    ),
    Profile(
        "openai",
        "gpt-4.1",
        rules=(
            *COMMON_RULES,
            Rule("known-parameters", known_parameters),
            Rule("no-reasoning-effort", no_reasoning_effort),
        ),
        window=1_047_576,
    ),
    Profile(
        "gemini",
        "gemini-3-pro-preview",
        path="/v1beta/openai/chat/completions",
        rules=(*COMMON_RULES, Rule("thought-signatures", thought_signatures)),
        error_style="google",
        signatures=True,
        done_marker=False,
        window=1_048_576,
    ),
    Profile(
        "xai",
        "grok-4",
        rules=(*COMMON_RULES, Rule("grok-4-reasoning", xai_reasoning)),
        window=256_000,
    ),
    Profile(
        "mistral",
        "mistral-large-latest",
        rules=(
            *COMMON_RULES,
            Rule("mistral-ids", mistral_ids),
            Rule("mistral-fields", mistral_fields, 422),
        ),
        error_style="mistral",
        short_ids=True,
        window=131_072,
    ),
    Profile(
        "groq",
        "openai/gpt-oss-120b",
        path="/openai/v1/chat/completions",
        rules=(*COMMON_RULES, Rule("groq-unsupported", groq_unsupported)),
        groq_usage=True,
        reasoning_field="reasoning",
        window=131_072,
    ),
    Profile(
        "openrouter",
        "qwen/qwen3-coder",
        path="/api/v1/chat/completions",
        rules=COMMON_RULES,
        reasoning_field="reasoning",
        window=262_144,
    ),
    Profile(
        "moonshot",
        "kimi-k2-thinking",
        rules=THINKING_RULES,
        reasoning_field="reasoning_content",
        window=262_144,
    ),
    Profile(
        "deepseek",
        "deepseek-reasoner",
        rules=THINKING_RULES,
        reasoning_field="reasoning_content",
        window=131_072,
    ),
    Profile(
        "ollama",
        "qwen3-coder",
        key=None,
        rules=COMMON_RULES,
        parallel_at_index_0=True,
        window=262_144,
    ),
)


def _steps_done(request: JSON) -> list[str]:
    tool_text = " ".join(
        str(m.get("content")) for m in request.get("messages", []) if m.get("role") == "tool"
    )
    return [step for step in ("STEP-1", "STEP-2") if step in tool_text]


def _opaque(label: str) -> str:
    """A value the client can't forge: what the provider checks it gets back."""
    return base64.b64encode(hashlib.sha256(label.encode()).digest()).decode()


@dataclass(kw_only=True)
class FakeProvider(FakeServer):
    profile: Profile
    issued: dict[str, str] = field(default_factory=dict)
    """Per tool-call id: the signature or reasoning handed out with it."""
    refused: list[tuple[int, str]] = field(default_factory=list)
    """Every request refused, as (status, message): a test that expects none asserts []."""
    cut: list[int] = field(default_factory=list)
    """Ollama: how many messages each request lost to the window (0 when it fit)."""

    def failure_body(self, status: int) -> bytes:
        """Gemini's errors as Google APIs write them (a list; 429 RESOURCE_EXHAUSTED, 503
        UNAVAILABLE: ai.google.dev/gemini-api/docs/troubleshooting), Mistral's 429
        `rate_limited`, and OpenAI's for the others."""
        if self.profile.error_style == "google":
            status_name, message = GOOGLE_FAILURES[status]
            error = {"code": status, "message": message, "status": status_name}
            return json.dumps([{"error": error}]).encode()
        if self.profile.error_style == "mistral" and status == 429:
            return json.dumps(MISTRAL_RATE_LIMITED).encode()
        return openai_failure(status)

    def error(
        self, handler: BaseHTTPRequestHandler, status: int, message: str, code: str | None = None
    ) -> None:
        self.refused.append((status, message))
        if self.profile.error_style == "google":
            code = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED"}.get(status, "INTERNAL")
            payload: Any = [{"error": {"code": status, "message": message, "status": code}}]
        elif self.profile.error_style == "mistral" and status == 422:
            detail = [{"type": "extra_forbidden", "loc": ["body"], "msg": message}]
            payload = {
                "object": "error",
                "message": {"detail": detail},
                "type": "invalid_request_error",
            }
        else:
            payload = {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": "messages" if code == "context_length_exceeded" else None,
                    "code": code,
                }
            }
        send_json(handler, status, json.dumps(payload).encode())

    def respond(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        profile = self.profile
        auth = handler.headers.get("authorization")
        if profile.key is not None and auth != f"Bearer {profile.key}":
            self.error(handler, 401, "Incorrect API key provided.")
            return
        if handler.path != profile.path:
            self.error(handler, 404, f"Not found: {handler.path}")
            return
        request = json.loads(body)
        if request.get("model") != profile.model:
            self.error(handler, 404, f"The model `{request.get('model')}` does not exist.")
            return
        if profile.kind == "ollama":
            request = self.cut_to_window(request)
            rules = profile.rules
        else:
            rules = (*profile.rules, WINDOW_RULE)
        for rule in rules:
            message = rule.check(request, self)
            if message is not None:
                self.error(handler, rule.status, message, rule.code)
                return
        chunks = self.answer(request)
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.send_header("transfer-encoding", "chunked")
        handler.end_headers()
        events = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks]
        if profile.done_marker:
            events.append(b"data: [DONE]\n\n")
        write_chunked(handler, events, body)

    def cut_to_window(self, request: JSON) -> JSON:
        """What Ollama's OpenAI endpoint does with a prompt over `num_ctx`: it drops the oldest
        messages, keeping the system messages and the latest one, without an error."""
        messages = list(request.get("messages", []))
        dropped = 0
        while prompt_tokens({**request, "messages": messages}) > self.profile.window:
            oldest = next(
                (i for i, m in enumerate(messages[:-1]) if m.get("role") != "system"), None
            )
            if oldest is None:
                break
            del messages[oldest]
            dropped += 1
        self.cut.append(dropped)
        return {**request, "messages": messages}

    def answer(self, request: JSON) -> list[JSON]:
        """The streamed chunks of the next step of the loop (always streamed: Claude Code is)."""
        profile = self.profile
        done = _steps_done(request)
        n = len(self.received)
        if len(done) == 2 or (profile.parallel_at_index_0 and done):
            return self._chunks(n, text=FINAL, finish="stop")
        steps = ["STEP-1", "STEP-2"] if profile.parallel_at_index_0 else [f"STEP-{len(done) + 1}"]
        calls = []
        for i, step in enumerate(steps):
            call_id = _opaque(f"{n}-{i}")[:9] if profile.short_ids else f"call_{n}_{i}"
            call_id = re.sub(r"[^A-Za-z0-9]", "x", call_id)
            call: JSON = {
                "index": 0 if profile.parallel_at_index_0 else i,
                "id": call_id,
                "type": "function",
                "function": {"name": "Bash", "arguments": json.dumps({"command": f"echo {step}"})},
            }
            if profile.signatures and i == 0:
                signature = _opaque(f"signature {call_id}")
                self.issued[call_id] = signature
                call["extra_content"] = {"google": {"thought_signature": signature}}
            calls.append(call)
        reasoning = f"I will run echo {' and '.join(steps)}."
        if profile.reasoning_field:
            self.issued[calls[0]["id"]] = reasoning
        return self._chunks(n, reasoning=reasoning, calls=calls, finish="tool_calls")

    def _chunks(
        self,
        n: int,
        text: str = "",
        reasoning: str = "",
        calls: list[JSON] = (),
        finish: str = "stop",
    ) -> list[JSON]:
        profile = self.profile

        def chunk(delta: JSON, finish_reason: str | None = None) -> JSON:
            return {
                "id": f"chatcmpl-{profile.kind}-{n}",
                "object": "chat.completion.chunk",
                "model": profile.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }

        out = [chunk({"role": "assistant", "content": ""})]
        if profile.reasoning_field and reasoning:
            out += [
                chunk({profile.reasoning_field: reasoning[i : i + 9]})
                for i in range(0, len(reasoning), 9)
            ]
        if text:
            out += [chunk({"content": text[i : i + 7]}) for i in range(0, len(text), 7)]
        for call in calls:
            if profile.signatures or profile.parallel_at_index_0:
                out.append(chunk({"tool_calls": [call]}))  # whole calls, one chunk each
                continue
            arguments = call["function"]["arguments"]
            head = {**call, "function": {"name": "Bash", "arguments": ""}}
            out.append(chunk({"tool_calls": [head]}))
            out += [
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": call["index"],
                                "function": {"arguments": arguments[i : i + 5]},
                            }
                        ]
                    }
                )
                for i in range(0, len(arguments), 5)
            ]
        # Gemini and Ollama say "stop" even when they call tools.
        says_stop = profile.signatures or profile.parallel_at_index_0
        out.append(chunk({}, "stop" if says_stop else finish))
        usage = {"prompt_tokens": 900, "completion_tokens": 40, "total_tokens": 940}
        if profile.groq_usage:
            out[-1]["x_groq"] = {"id": "req_1", "usage": usage}
        else:
            last = chunk({})
            last["choices"] = []
            last["usage"] = usage
            out.append(last)
        return out
