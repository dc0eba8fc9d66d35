"""A local stand-in for an OpenAI Chat Completions provider, speaking its real wire format.

Streams are `data: {chunk}\\n\\n` events over chunked transfer encoding, with a
usage-only final chunk (`choices: []`, as `stream_options.include_usage` asks)
and `data: [DONE]`. Errors are OpenAI error bodies with their status codes.
What it answers depends on the last user message, so one server plays every case:
"TOOL" (one tool call), "PARALLEL" (two), "THINK" (reasoning then text),
"GROW" (a Bash `cat big.txt` per turn, GROW_CALLS times: a session that keeps growing),
"RATELIMIT" (429), "BROKEN" (500), "ERROR-IN-200" (a rate-limit error object sent with
status 200, as some OpenAI-compatible servers do); after a tool result it answers with text.
"GZIP" anywhere makes it gzip the answer even though the gateway asked for identity.
"MARK-<id>", "PACE-<ms>" and "FAULT-RESET" work as in fake_anthropic.
"""

from __future__ import annotations

import gzip
import json
import re
import time
import uuid
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.fake_anthropic import echoed, write_chunked
from tests.support.fake_server import FakeServer, openai_failure, send_json

FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _last_user_text(request: dict[str, Any]) -> str:
    for message in reversed(request.get("messages", [])):
        if message["role"] == "tool":
            return "TOOL_RESULT " + str(message["content"])
        if message["role"] == "user":
            content = message["content"]
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
            return content
    return ""


GROW_CALLS = 8


def _first_user_text(request: dict[str, Any]) -> str:
    first = next((m for m in request.get("messages", []) if m["role"] == "user"), None)
    return str(first["content"]) if first else ""


def _grow(request: dict[str, Any]) -> dict[str, Any] | None:
    """Another `cat big.txt` while the session has had fewer than GROW_CALLS results."""
    done = sum(m["role"] == "tool" for m in request.get("messages", []))
    if "GROW" not in _first_user_text(request) or done >= GROW_CALLS:
        return None
    call = {**_tool_call(0, "Bash", {"command": "cat big.txt"}), "id": f"call_grow_{done}"}
    return {"tool_calls": [call], "finish_reason": "tool_calls"}


def _tool_call(index: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": index,
        "id": f"call_{name}_{index}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def plan(request: dict[str, Any]) -> dict[str, Any]:
    """What to answer: {text, reasoning, tool_calls, finish_reason} or {error: (status, type)}."""
    text = _last_user_text(request)
    if "RATELIMIT" in text:
        return {"error": (429, "requests", "rate_limit_exceeded", "Rate limit reached for gpt-4.1")}
    if "ERROR-IN-200" in text:
        return {"error": (200, "rate_limit_exceeded", 429, "Quota exceeded for this minute.")}
    if "BROKEN" in text:
        return {
            "error": (500, "server_error", None, "The server had an error processing your request.")
        }
    if (grow := _grow(request)) is not None:
        return grow
    if text.startswith("TOOL_RESULT"):
        return {
            "text": f"The tool said: {text.removeprefix('TOOL_RESULT ')}",
            "finish_reason": "stop",
        }
    if "PARALLEL" in text:
        calls = [
            _tool_call(0, "get_weather", {"city": "Paris"}),
            _tool_call(1, "get_time", {"tz": "CET"}),
        ]
        return {"tool_calls": calls, "finish_reason": "tool_calls"}
    if "TOOL" in text:
        offered = [tool["function"]["name"] for tool in request.get("tools", [])]
        mcp = [n for n in offered if n.startswith("mcp__")]
        name = mcp[0] if mcp else "Bash" if "Bash" in offered else "run_command"
        calls = [_tool_call(0, name, {"command": "echo hello ünïcode"})]
        return {"text": "Let me run that.", "tool_calls": calls, "finish_reason": "tool_calls"}
    if "THINK" in text:
        return {
            "reasoning": "First, consider the question… 🤔",
            "text": "42",
            "finish_reason": "stop",
        }
    return {"text": "Hello from the OpenAI-format fake — ✓ 日本語", "finish_reason": "stop"}


USAGE = {
    "prompt_tokens": 120,
    "completion_tokens": 17,
    "total_tokens": 137,
    "prompt_tokens_details": {"cached_tokens": 100},
}


def completion_id() -> str:
    """A new id for each answer, as providers give: Claude Code groups a session's messages
    by it (one id for every answer left /compact "not enough messages")."""
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def completion(model: str, answer: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.get("text")}
    if "reasoning" in answer:
        message["reasoning_content"] = answer["reasoning"]
    if "tool_calls" in answer:
        message["tool_calls"] = [
            {k: v for k, v in c.items() if k != "index"} for c in answer["tool_calls"]
        ]
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": answer["finish_reason"]}],
        "usage": USAGE,
    }


def chunks(model: str, answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The chunk sequence a real provider streams, fragments and all."""
    answer_id = completion_id()

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "id": answer_id,
            "object": "chat.completion.chunk",
            "created": 1764100000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }

    out = [chunk({"role": "assistant", "content": ""})]
    reasoning = answer.get("reasoning", "")
    out += [chunk({"reasoning_content": reasoning[i : i + 7]}) for i in range(0, len(reasoning), 7)]
    text = answer.get("text") or ""
    out += [chunk({"content": text[i : i + 5]}) for i in range(0, len(text), 5)]
    for call in answer.get("tool_calls", []):
        args = call["function"]["arguments"]
        head = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
        out.append(chunk({"tool_calls": [head]}))
        out += [
            chunk(
                {
                    "tool_calls": [
                        {"index": call["index"], "function": {"arguments": args[i : i + 6]}}
                    ]
                }
            )
            for i in range(0, len(args), 6)
        ]
    out.append(chunk({}, answer["finish_reason"]))
    final = chunk({}, None, usage=USAGE)
    final["choices"] = []
    out.append(final)
    return out


@dataclass(kw_only=True)
class FakeOpenAI(FakeServer):
    expected_key: str
    retry_after: str = "1"
    """The `retry-after` of its error answers (seconds)."""

    def failure_body(self, status: int) -> bytes:
        return openai_failure(status)

    @staticmethod
    def _json(
        handler: BaseHTTPRequestHandler,
        status: int,
        payload: Any,
        gzipped: bool = False,
        **headers: str,
    ) -> None:
        data = json.dumps(payload).encode()
        extra = {name.replace("_", "-"): value for name, value in headers.items()}
        if gzipped:
            data = gzip.compress(data)
            extra["content-encoding"] = "gzip"
        send_json(handler, status, data, extra)

    def respond(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        if handler.headers.get("authorization") != f"Bearer {self.expected_key}":
            error = {
                "message": "Incorrect API key provided.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
            self._json(handler, 401, {"error": error})
            return
        if not handler.path.endswith("/chat/completions"):
            self._json(
                handler, 404, {"error": {"message": "Not found", "type": "invalid_request_error"}}
            )
            return
        request = json.loads(body)
        names = [t["function"]["name"] for t in request.get("tools", [])]
        bad = next((n for n in names if not FUNCTION_NAME.match(n)), None)
        if bad is not None:  # OpenAI's function-calling reference: ^[a-zA-Z0-9_-]{1,64}$
            message = f"Invalid 'tools[].function.name': string does not match pattern: {bad!r}"
            error = {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
            self._json(handler, 400, {"error": error})
            return
        answer = plan(request)
        gzipped = "GZIP" in _last_user_text(request)
        if "error" in answer:
            status, kind, code, message = answer["error"]
            error = {"message": message, "type": kind, "param": None, "code": code}
            self._json(handler, status, {"error": error}, retry_after=self.retry_after)
            return
        model = request["model"]
        if "text" in answer:
            answer["text"] = echoed(answer["text"], body)
        if not request.get("stream"):
            self._json(handler, 200, completion(model, answer), gzipped)
            return
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream; charset=utf-8")
        handler.send_header("transfer-encoding", "chunked")
        if gzipped:
            handler.send_header("content-encoding", "gzip")
        handler.end_headers()
        events = [
            f"data: {json.dumps(c, ensure_ascii=False)}\n\n".encode() for c in chunks(model, answer)
        ]
        events.append(b"data: [DONE]\n\n")
        if gzipped:
            packer = zlib.compressobj(wbits=31)
            events = [packer.compress(e) + packer.flush(zlib.Z_SYNC_FLUSH) for e in events]
            events.append(packer.flush())
        write_chunked(handler, events, body)
