"""A local stand-in for an Anthropic-API provider (Anthropic itself, DeepSeek's endpoint).

It speaks the real wire format: JSON messages, SSE streams framed as
`event: …\\ndata: …\\n\\n` over chunked transfer encoding, Anthropic error bodies
with their status codes, and a `request-id` header. Every request it receives is
recorded so tests can assert what reached the provider.

Words in the request body pick a behaviour (both fakes read the same ones):
"MARK-<id>" is echoed at the end of the answer (which request an answer belongs to);
"PACE-<ms>" streams one event per word, <ms> apart; "SLOW" pauses 0.4 s between events;
"FAULT-RESET" aborts the connection halfway through the stream; "FAULT-HANG" is silent
for 10 s; "FAULT-429" (with retry-after) and "FAULT-500" answer errors; "CACHE-<read>-<write>"
reports that many prompt-cache reads and writes in the usage (in `message_start` when
streamed, as Anthropic's API documents it); "SPLIT" sends each event that has a usage object
in two chunks, cut inside it; "LONG-<kib>" makes the answer's text that many KiB longer.
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.fake_server import FakeServer, send_json

_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_MARKER = re.compile(rb"MARK-[0-9A-Za-z]+")
_PACE = re.compile(rb"PACE-(\d+)")
_CACHE = re.compile(rb"CACHE-(\d+)-(\d+)")
_LONG = re.compile(rb"LONG-(\d+)")
HANG_S = 10.0


def _signed(signature: object) -> bool:
    """Anthropic's thinking signatures are base64; it refuses any other (missing, empty, or
    another provider's) as invalid."""
    return isinstance(signature, str) and bool(_BASE64.fullmatch(signature))


def echoed(answer: str, body: bytes) -> str:
    """The answer with the request's marker appended, when it has one."""
    marker = _MARKER.search(body)
    return f"{answer} {marker.group().decode()}" if marker else answer


def pace_s(body: bytes) -> float:
    """Seconds between streamed events: PACE-<ms>, SLOW (0.4 s), else none."""
    pace = _PACE.search(body)
    return int(pace.group(1)) / 1000 if pace else 0.4 if b"SLOW" in body else 0.0


def cache_usage(body: bytes) -> dict[str, int]:
    """The cache counts a CACHE-<read>-<write> word asks for; none without it."""
    found = _CACHE.search(body)
    if not found:
        return {}
    read, write = (int(n) for n in found.groups())
    return {"cache_read_input_tokens": read, "cache_creation_input_tokens": write}


def split_usage(chunk: bytes) -> list[bytes]:
    """The chunk in two pieces cut inside its usage object's first key; whole without one."""
    at = chunk.find(b'"usage"')
    return [chunk] if at < 0 else [chunk[: at + 14], chunk[at + 14 :]]


def reset(handler: BaseHTTPRequestHandler) -> None:
    """Abort the connection with a TCP RST, as a crashing provider does."""
    handler.wfile.flush()
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    handler.connection.close()
    handler.close_connection = True


def write_chunked(handler: BaseHTTPRequestHandler, pieces: list[bytes], body: bytes) -> bool:
    """Send pieces as HTTP chunks, paced and faulted as the request's words ask.

    Returns False when the connection was reset halfway ("FAULT-RESET")."""
    pause = pace_s(body)
    for i, piece in enumerate(pieces):
        if b"FAULT-RESET" in body and i == len(pieces) // 2:
            reset(handler)
            return False
        handler.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        handler.wfile.flush()
        time.sleep(pause)
    handler.wfile.write(b"0\r\n\r\n")
    return True


def message(model: str, text: str, cache: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 6, **(cache or {})},
    }


def sse_events(
    model: str, text: str, by_word: bool = False, cache: dict[str, int] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """The event sequence Anthropic streams for a one-block text answer (in two deltas, or
    one a word)."""
    start = message(model, "")
    start["content"], start["stop_reason"] = [], None
    start["usage"] = {"input_tokens": 12, "output_tokens": 1, **(cache or {})}
    half = len(text) // 2
    parts = re.findall(r"\S+\s*", text) if by_word else (text[:half], text[half:])
    return [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
        *(
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": part},
                },
            )
            for part in parts
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 6},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def sse_bytes(events: list[tuple[str, dict[str, Any]]]) -> list[bytes]:
    return [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events]


def prompt_tokens(request: dict[str, Any]) -> int:
    """What the fakes count as a request's prompt: 4 characters of the JSON of its system
    prompt, messages and tools a token. Real tokenizers differ (docs/translation.md#model-facts);
    the gateway's own estimate counts more tokens than this."""
    return len(json.dumps([request.get(k) for k in ("system", "messages", "tools")])) // 4


ANTHROPIC_FAILURES = {
    429: ("rate_limit_error", "This request would exceed your organization's rate limit."),
    503: ("api_error", "Service unavailable"),
    529: ("overloaded_error", "Overloaded"),
}
"""A failing Anthropic's error type and message, by status (https://docs.anthropic.com/en/api/errors)."""

USER_KEY_PREFIX = "sk-ant-"
"""How Anthropic's API keys start (sk-ant-api03-…)."""


@dataclass(kw_only=True)
class FakeAnthropic(FakeServer):
    """`expected_key`: the gateway's key for this account. With it set, a request must carry
    that key in `x-api-key`, or a user's own credential (what passes through an entry
    without access_key): an `sk-ant-…` key in `x-api-key`, or a Bearer token (Claude Code's
    ANTHROPIC_AUTH_TOKEN, opaque to the gateway). Anything else (no credential, another
    provider's key in `x-api-key`, the gateway's key as a Bearer token) gets Anthropic's
    401. None accepts any credential."""

    expected_key: str | None = None
    window: int = 0
    """When set, a prompt over it (`prompt_tokens`) gets Anthropic's 400 "prompt is too long"."""
    answer: str = "Hello from the fake provider ✓"
    sent: list[bytes] = field(default_factory=list)
    """The exact bytes of the last response body sent."""

    def accepts(self, headers: Any) -> bool:
        if self.expected_key is None:
            return True
        key = headers.get("x-api-key") or ""
        authorization = headers.get("authorization") or ""
        token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""
        return key == self.expected_key or (
            key.startswith(USER_KEY_PREFIX) if key else bool(token) and token != self.expected_key
        )

    def _json(self, handler: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.sent = [data]  # before the bytes leave: a client may compare once it has them
        send_json(handler, status, data, {"request-id": f"req_{uuid.uuid4().hex[:20]}"})

    def failure_body(self, status: int) -> bytes:
        """Anthropic's errors page: 429 `rate_limit_error`, 529 `overloaded_error`; a 503 (not
        on that page: what a load balancer in front answers) as its `api_error`."""
        kind, text = ANTHROPIC_FAILURES[status]
        return json.dumps({"type": "error", "error": {"type": kind, "message": text}}).encode()

    def error(self, handler: BaseHTTPRequestHandler, status: int, kind: str, text: str) -> None:
        self._json(handler, status, {"type": "error", "error": {"type": kind, "message": text}})

    def respond(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        if handler.command == "HEAD":  # Claude Code's connectivity probe
            handler.send_response(200)
            handler.send_header("content-length", "0")
            handler.end_headers()
            return
        if not self.accepts(handler.headers):
            self.error(handler, 401, "authentication_error", "invalid x-api-key")
            return
        if handler.command == "GET":
            self._json(
                handler, 200, {"data": [], "has_more": False, "first_id": None, "last_id": None}
            )
            return
        try:
            request = json.loads(body)
        except ValueError:
            self.error(handler, 400, "invalid_request_error", "body is not JSON")
            return
        if request.get("messages") == []:
            # Anthropic's own words for a request without a turn.
            no_turn = "messages: at least one message is required"
            self.error(handler, 400, "invalid_request_error", no_turn)
            return
        for i, turn in enumerate(request.get("messages") or []):
            for j, block in enumerate(
                turn.get("content") if isinstance(turn.get("content"), list) else []
            ):
                if block.get("type") == "thinking" and not _signed(block.get("signature")):
                    # As Anthropic answers a thinking block it did not sign.
                    where = f"messages.{i}.content.{j}"
                    self.error(
                        handler,
                        400,
                        "invalid_request_error",
                        f"{where}: Invalid `signature` in `thinking` block",
                    )
                    return
        if handler.path.split("?")[0].endswith("/count_tokens"):
            self._json(handler, 200, {"input_tokens": 42})
            return
        if self.window and (prompt := prompt_tokens(request)) > self.window:
            too_long = f"prompt is too long: {prompt} tokens > {self.window} maximum"
            self.error(handler, 400, "invalid_request_error", too_long)
            return
        if b"FAULT-HANG" in body:
            time.sleep(HANG_S)
            return
        if b"FAULT-429" in body:
            handler.send_response(429)
            handler.send_header("retry-after", "7")
            data = b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}'
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        if b"FAULT-500" in body:
            self.error(handler, 500, "api_error", "Internal server error")
            return
        model = request.get("model", "")
        answer = echoed(self.answer, body)
        if long := _LONG.search(body):
            answer += " lorem" * (int(long.group(1)) * 1024 // 6)
        if not request.get("stream"):
            self._json(handler, 200, message(model, answer, cache_usage(body)))
            return
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream; charset=utf-8")
        handler.send_header("cache-control", "no-cache")
        handler.send_header("request-id", f"req_{uuid.uuid4().hex[:20]}")
        handler.send_header("transfer-encoding", "chunked")
        handler.end_headers()
        events = sse_events(model, answer, by_word=b"PACE-" in body, cache=cache_usage(body))
        chunks = sse_bytes(events)
        if b"SPLIT" in body:
            chunks = [part for chunk in chunks for part in split_usage(chunk)]
        self.sent = chunks  # before the last chunk leaves: a client may compare once it has it
        if not write_chunked(handler, chunks, body):
            self.sent = chunks[: len(chunks) // 2]
