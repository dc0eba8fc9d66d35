"""A local stand-in for OpenAI's Responses API (`POST /v1/responses`), as strict as the real one.

`refusal(request)` holds the rules the real API enforces on a request, each with its source
in docs/translation.md ("The Responses fake"); the fake answers a refused request with
OpenAI's error body and status. Answers come from `tests/support/responses_streams.py`, whose events
the `openai` SDK's own models and stream accumulator accept. What it answers depends on the
last input item, so one server plays every case: "TOOL" (reasoning, then a Bash call),
"THINK" (a reasoning summary, then text), "RATELIMIT" (429), "BROKEN" (500), "FAIL"
(`response.failed` mid-stream); after a function call's output it answers with text. A
reasoning model (`gpt-5*`, `o*`) asked for `reasoning.encrypted_content` gets it, and must
send it back unchanged: the fake refuses encrypted content it did not issue.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from openai.types.responses.response_create_params import ResponseCreateParamsBase

from tests.support.fake_anthropic import echoed, write_chunked
from tests.support.fake_server import FakeServer, openai_failure, send_json
from tests.support.responses_streams import Answer, Call, encrypted_for, events, response, sse

JSON = dict[str, Any]
KNOWN_PARAMETERS = set(ResponseCreateParamsBase.__annotations__) | {"stream"}
MIN_OUTPUT_TOKENS = 16
USER_PARTS = {"input_text", "input_image", "input_file"}
ASSISTANT_PARTS = {"output_text", "refusal"}
EFFORTS = {"none", "minimal", "low", "medium", "high", "xhigh"}
SUMMARIES = {"auto", "concise", "detailed"}


class Refused(Exception):
    def __init__(self, status: int, message: str, param: str | None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> JSON:
        kind = "invalid_request_error"
        return {
            "error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        }


def is_reasoning_model(model: str) -> bool:
    return model.startswith(("gpt-5", "o1", "o3", "o4"))


def _issued(encrypted: str) -> bool:
    try:
        raw = base64.urlsafe_b64decode(encrypted.removeprefix("gAAAAAB"))
    except ValueError:
        return False
    return raw.startswith(b"fake-reasoning-")


def refusal(request: Any, *, verified: bool = True) -> Refused | None:
    """What the real API would refuse in this request, or None; `verified`: whether the key's
    organization is verified (only those get reasoning summaries)."""
    try:
        _check(request, verified)
    except Refused as exc:
        return exc
    return None


def _check(request: Any, verified: bool) -> None:
    if not isinstance(request, dict):
        raise Refused(400, "The body must be a JSON object.", None)
    for key in request:
        if key not in KNOWN_PARAMETERS:
            raise Refused(400, f"Unknown parameter: '{key}'.", key, "unknown_parameter")
    if not isinstance(request.get("model"), str):
        raise Refused(
            400, "Missing required parameter: 'model'.", "model", "missing_required_parameter"
        )
    model = request["model"]
    limit = request.get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or limit < MIN_OUTPUT_TOKENS):
        message = (
            "Invalid 'max_output_tokens': integer below minimum value. "
            f"Expected a value >= {MIN_OUTPUT_TOKENS}, but got {limit} instead."
        )
        raise Refused(400, message, "max_output_tokens", "integer_below_min_value")
    if is_reasoning_model(model):
        for key in ("temperature", "top_p"):
            if key in request:
                message = f"Unsupported parameter: '{key}' is not supported with this model."
                raise Refused(400, message, key, "unsupported_parameter")
    reasoning = request.get("reasoning")
    if reasoning is not None:
        if not is_reasoning_model(model):
            message = "Unsupported parameter: 'reasoning.effort' is not supported with this model."
            raise Refused(400, message, "reasoning.effort", "unsupported_parameter")
        if reasoning.get("effort") not in EFFORTS | {None}:
            raise Refused(400, "Invalid value for 'reasoning.effort'.", "reasoning.effort")
        if reasoning.get("summary") not in SUMMARIES | {None}:
            raise Refused(400, "Invalid value for 'reasoning.summary'.", "reasoning.summary")
        if reasoning.get("summary") and not verified:
            message = (
                "Your organization must be verified to generate reasoning summaries. Please go "
                "to: https://platform.openai.com/settings/organization/general and click on "
                "Verify Organization. If you just verified, it can take up to 15 minutes for "
                "access to propagate."
            )
            raise Refused(400, message, "reasoning.summary", "unsupported_value")
    for n, tool in enumerate(request.get("tools") or []):
        _check_tool(tool, n)
    _check_input(request.get("input"), store=request.get("store", True))


def _check_tool(tool: JSON, n: int) -> None:
    where = f"tools[{n}]"
    if tool.get("type") != "function" or not isinstance(tool.get("name"), str):
        raise Refused(400, f"Missing required parameter: '{where}.name'.", f"{where}.name")
    if "function" in tool:  # the Chat Completions shape
        raise Refused(400, f"Unknown parameter: '{where}.function'.", f"{where}.function")
    schema = tool.get("parameters") or {}
    if tool.get("strict", True):  # strict is the default: every property must be required
        properties = schema.get("properties") or {}
        missing = [p for p in properties if p not in (schema.get("required") or [])]
        if missing or schema.get("additionalProperties", True) is not False:
            message = (
                f"Invalid schema for function '{tool['name']}': In context=(), 'required' is "
                "required to be supplied and to be an array including every key in properties"
                + (f". Missing '{missing[0]}'." if missing else ".")
            )
            raise Refused(400, message, f"{where}.parameters", "invalid_function_parameters")


def _check_input(items: Any, *, store: bool) -> None:
    if isinstance(items, str):
        return
    if not isinstance(items, list):
        raise Refused(400, "Missing required parameter: 'input'.", "input")
    calls: set[str] = set()
    answered: set[str] = set()
    for n, item in enumerate(items):
        where = f"input[{n}]"
        kind = item.get("type", "message")
        if kind == "message":
            role, content = item.get("role"), item.get("content")
            if role not in ("user", "assistant", "system", "developer"):
                raise Refused(400, f"Invalid value: '{role}'.", f"{where}.role")
            allowed = ASSISTANT_PARTS if role == "assistant" else USER_PARTS
            if not isinstance(content, str):
                for k, part in enumerate(content or []):
                    if part.get("type") not in allowed:
                        message = (
                            f"Invalid value: '{part.get('type')}'. Supported values are: "
                            + ", ".join(f"'{a}'" for a in sorted(allowed))
                            + "."
                        )
                        raise Refused(400, message, f"{where}.content[{k}].type", "invalid_value")
        elif kind == "function_call":
            if not isinstance(item.get("arguments"), str):
                raise Refused(400, f"Invalid type for '{where}.arguments'.", f"{where}.arguments")
            calls.add(item["call_id"])
        elif kind == "function_call_output":
            if item.get("call_id") not in calls:
                message = f"No tool call found for function call output with call_id {item.get('call_id')}."
                raise Refused(400, message, "input")
            output = item.get("output")
            if not isinstance(output, str):
                for k, part in enumerate(output or []):
                    if part.get("type") not in USER_PARTS:
                        where_part = f"{where}.output[{k}].type"
                        raise Refused(400, f"Invalid value: '{part.get('type')}'.", where_part)
            answered.add(item["call_id"])
        elif kind == "reasoning":
            encrypted = item.get("encrypted_content")
            if not store and not encrypted:
                message = (
                    f"Item with id '{item.get('id')}' not found. Items are not persisted when "
                    "`store` is set to false. Try again with `store` set to true, or remove "
                    "this item from your input."
                )
                raise Refused(404, message, "input")
            if encrypted and not _issued(encrypted):
                message = f"The encrypted content for item {item.get('id')} could not be verified."
                raise Refused(400, message, "input", "invalid_encrypted_content")
        else:
            raise Refused(400, f"Invalid value: '{kind}'.", f"{where}.type", "invalid_value")
    for call_id in sorted(calls - answered):
        raise Refused(400, f"No tool output found for function call {call_id}.", "input")


def _last_input(request: JSON) -> str:
    items = request.get("input")
    if isinstance(items, str):
        return items
    for item in reversed(items):
        if item.get("type") == "function_call_output":
            return "TOOL_RESULT " + str(item["output"])
        if item.get("type", "message") == "message" and item.get("role") == "user":
            content = item["content"]
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content if p.get("type") == "input_text")
    return ""


def plan(request: JSON, turn: int) -> Answer | tuple[int, str, str]:
    """What to answer: an Answer, or (status, code, message) for an error."""
    text = _last_input(request)
    if "RATELIMIT" in text:
        return 429, "rate_limit_exceeded", f"Rate limit reached for {request['model']}."
    if "BROKEN" in text:
        return 500, "server_error", "The server had an error processing your request."
    thinks = is_reasoning_model(request["model"])
    wants = "reasoning.encrypted_content" in (request.get("include") or [])
    summary_asked = bool((request.get("reasoning") or {}).get("summary"))
    reasoning = {
        "reasoning": thinks,
        "encrypted": encrypted_for(turn) if thinks and wants else "",
    }
    if text.startswith("TOOL_RESULT"):
        said = f"The tool said: {text.removeprefix('TOOL_RESULT ')}"
        summary = ("**Reading** the tool's output.",) if thinks and summary_asked else ()
        return Answer(text=said, summary=summary, model=request["model"], **reasoning)
    if "TOOL" in text:
        offered = {tool.get("name") for tool in request.get("tools") or []}
        name = "Bash" if "Bash" in offered else "run_command"
        call = Call("call_fake_bash_1", name, json.dumps({"command": "echo hello ünïcode"}))
        summary = ("**Choosing** a command to run.",) if thinks and summary_asked else ()
        return Answer(summary=summary, calls=(call,), model=request["model"], **reasoning)
    summary = ("First, consider the question… 🤔",) if thinks and summary_asked else ()
    answer = "42" if "THINK" in text else "Hello from the Responses fake — ✓ 日本語"
    return Answer(text=answer, summary=summary, model=request["model"], **reasoning)


@dataclass(kw_only=True)
class FakeResponses(FakeServer):
    expected_key: str
    answered: int = 0

    def failure_body(self, status: int) -> bytes:
        return openai_failure(status)

    @staticmethod
    def _json(handler: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        send_json(handler, status, json.dumps(payload).encode())

    def respond(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        if handler.headers.get("authorization") != f"Bearer {self.expected_key}":
            error = Refused(401, "Incorrect API key provided.", None, "invalid_api_key")
            self._json(handler, 401, error.body())
            return
        if handler.command != "POST" or not handler.path.endswith("/v1/responses"):
            self._json(handler, 404, Refused(404, "Not found", None).body())
            return
        try:
            request = json.loads(body)
        except ValueError:
            self._json(handler, 400, Refused(400, "We could not parse the JSON body.", None).body())
            return
        refused = refusal(request)
        if refused is not None:
            self._json(handler, refused.status, refused.body())
            return
        self.answered += 1
        answer = plan(request, self.answered)
        if isinstance(answer, tuple):
            status, code, message = answer
            error = {
                "message": message,
                "type": "server_error" if status >= 500 else "requests",
                "param": None,
                "code": code,
            }
            self._json(handler, status, {"error": error})
            return
        if answer.text:
            answer = Answer(**{**answer.__dict__, "text": echoed(answer.text, body)})
        if not request.get("stream"):
            self._json(handler, 200, response(answer))
            return
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream; charset=utf-8")
        handler.send_header("transfer-encoding", "chunked")
        handler.end_headers()
        stream = events(answer)
        if "FAIL" in _last_input(request):
            failed = {
                **response(answer, status="failed", output=[]),
                "error": {"code": "server_error", "message": "The model failed mid-answer."},
            }
            stream = [
                *stream[:-1],
                {"type": "response.failed", "sequence_number": len(stream) - 1, "response": failed},
            ]
        write_chunked(handler, [sse([event]) for event in stream], body)
