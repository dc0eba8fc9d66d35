"""Capture each kind of request the pinned Claude Code sends, against a scripted server.

`python -m tests.support.capture OUT_DIR` runs `claude -p` (node_modules/.bin) in a fresh
home and project, pointed at a local server that answers from a script: a word in the
user's text makes the model call a tool (RUN-BASH, SPAWN-<agent>, SEARCH-WEB), any other
turn gets text. Every Messages request is written to OUT_DIR as `<scenario>-<n>.json`
({path, headers, body}) with the client key, the device id and the port replaced, so a
new Claude Code version can be captured again and compared (docs/router.md, "Request kinds").
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import uuid
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.support.claude_code import CLAUDE_BIN
from tests.support.fake_anthropic import sse_bytes, write_chunked
from tests.support.fake_server import FakeServer, send_json

EXAMPLE_KEY = "sk-ant-example-client-key"
EXAMPLE_HOST = "127.0.0.1:18080"
_DEVICE_ID = re.compile(r'(\\?"device_id\\?"\s*:\s*\\?")[0-9a-f]{64}')


def _events(model: str, blocks: list[dict[str, Any]], stop: str) -> list[tuple[str, dict]]:
    """Anthropic's event sequence for text and tool_use blocks."""
    start = {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 1},
    }
    events: list[tuple[str, dict]] = [
        ("message_start", {"type": "message_start", "message": start})
    ]
    for i, block in enumerate(blocks):
        if block["type"] == "text":
            opened, delta = (
                {"type": "text", "text": ""},
                {"type": "text_delta", "text": block["text"]},
            )
        else:
            opened = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        events += [
            (
                "content_block_start",
                {"type": "content_block_start", "index": i, "content_block": opened},
            ),
            ("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": i}),
        ]
    usage = {"output_tokens": 6}
    events += [
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": stop}, "usage": usage},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events


def _latest_text(body: dict[str, Any]) -> str:
    """The last user message's text, and whether a tool result ends the conversation."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message["content"]
        if isinstance(content, str):
            return content
        return " ".join(b.get("text", "") for b in content if b.get("type") == "text")
    return ""


def _ends_with_tool_result(body: dict[str, Any]) -> bool:
    users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    content = users[-1]["content"] if users else ""
    return isinstance(content, list) and any(b.get("type") == "tool_result" for b in content)


def script(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """What the scripted model answers: (content blocks, stop reason)."""
    output = body.get("output_config") or {}
    if "format" in output:
        properties = output["format"].get("schema", {}).get("properties", {})
        return [
            {"type": "text", "text": json.dumps(dict.fromkeys(properties, "Captured"))}
        ], "end_turn"
    if _ends_with_tool_result(body) or not body.get("tools"):
        return [{"type": "text", "text": "Done."}], "end_turn"
    text = _latest_text(body)
    tool_names = {t.get("name") for t in body["tools"]}
    call = None
    if "RUN-BASH" in text and "Bash" in tool_names:
        call = ("Bash", {"command": "echo captured", "description": "Echo a word"})
    spawn = re.search(r"SPAWN-([\w-]+)", text)
    if spawn and "Agent" in tool_names:
        prompt = "Say hello, nothing else."
        call = ("Agent", {"description": "Say hello", "prompt": prompt, "subagent_type": spawn[1]})
    if "SEARCH-WEB" in text and "WebSearch" in tool_names:
        call = ("WebSearch", {"query": "envoy ext_proc"})
    if call is None:
        return [{"type": "text", "text": "Done."}], "end_turn"
    name, arguments = call
    block = {
        "type": "tool_use",
        "id": f"toolu_{uuid.uuid4().hex[:24]}",
        "name": name,
        "input": arguments,
    }
    return [block], "tool_use"


@dataclass(kw_only=True)
class ScriptedAnthropic(FakeServer):
    """Answers every Messages request from `script`, streamed or not."""

    posts: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    def respond(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        if handler.command != "POST":
            data = b'{"data": [], "has_more": false}' if handler.command == "GET" else b""
            send_json(handler, 200, data)
            return
        self.posts.append((handler.path, dict(handler.headers.items()), body))
        request = json.loads(body)
        if handler.path.split("?")[0].endswith("/count_tokens"):
            send_json(handler, 200, b'{"input_tokens": 42}')
            return
        blocks, stop = script(request)
        events = _events(request.get("model", ""), blocks, stop)
        if not request.get("stream"):
            message = dict(events[0][1]["message"], content=blocks, stop_reason=stop)
            send_json(handler, 200, json.dumps(message).encode())
            return
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream; charset=utf-8")
        handler.send_header("transfer-encoding", "chunked")
        handler.end_headers()
        write_chunked(handler, sse_bytes(events), b"")


def scrubbed(path: str, headers: dict[str, str], body: bytes, port: int) -> dict[str, Any]:
    """A captured request without anything of this machine: key, device id, port."""
    text = _DEVICE_ID.sub(lambda m: m[1] + "0" * 64, body.decode())
    headers = {k: (EXAMPLE_KEY if k.lower() == "x-api-key" else v) for k, v in headers.items()}
    headers = {k: (EXAMPLE_HOST if k.lower() == "host" else v) for k, v in headers.items()}
    return {"path": path, "headers": headers, "body": json.loads(text.replace(str(port), "18080"))}


def png_pixel() -> str:
    """A 1×1 red PNG, base64: the smallest image Claude Code sends on as an image block."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    png = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )
    return base64.b64encode(png).decode()


REVIEWER_AGENT = """\
---
name: reviewer
description: Reviews code changes for bugs. Use after writing code.
tools: Read, Grep
model: openai/gpt-4.1
---
You review code for bugs and say what you found in one sentence.
"""


def _stream_json_image() -> str:
    content = [
        {"type": "text", "text": "what colour is this pixel?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": png_pixel()},
        },
    ]
    return json.dumps({"type": "user", "message": {"role": "user", "content": content}}) + "\n"


Scenario = tuple[list[str], str | None]
"""claude arguments, and standard input (None: none)."""

SCENARIOS: dict[str, list[Scenario]] = {
    "main": [(["-p", "write a python function that reverses a string"], None)],
    "tool-loop": [(["-p", "RUN-BASH please", "--allowedTools", "Bash(echo:*)"], None)],
    "subagent": [(["-p", "SPAWN-general-purpose to greet me", "--allowedTools", "Agent"], None)],
    "custom-agent": [(["-p", "SPAWN-reviewer to review", "--allowedTools", "Agent"], None)],
    "compact": [
        (["-p", "write a python function that reverses a string"], None),
        (["-p", "--continue", "now make it handle unicode graphemes"], None),
        (["-p", "--continue", "and add a docstring"], None),
        (["-p", "--continue", "/compact"], None),
    ],
    "web-search": [(["-p", "SEARCH-WEB for envoy", "--allowedTools", "WebSearch"], None)],
    "image": [
        (
            ["-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose"],
            _stream_json_image(),
        )
    ],
    "explore-agent": [(["-p", "SPAWN-Explore to look around", "--allowedTools", "Agent"], None)],
    "title": [(["-p", "write a python function that reverses a string"], None)],
    "thinking-enabled": [(["-p", "hello", "--model", "haiku"], None)],
}


SCENARIO_ENV = {"title": {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": ""}}
"""The title call is one of the calls that variable turns off."""


def run_scenario(name: str, steps: list[Scenario], out: Path, env_extra: dict[str, str]) -> int:
    """Run one scenario's claude invocations and write what reached the server."""
    server = ScriptedAnthropic().start()
    with tempfile.TemporaryDirectory() as tmp:
        home, project = Path(tmp) / "home", Path(tmp) / "project"
        (project / ".claude" / "agents").mkdir(parents=True)
        home.mkdir()
        (project / ".claude" / "agents" / "reviewer.md").write_text(REVIEWER_AGENT)
        env = {
            "PATH": f"{CLAUDE_BIN}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(home),
            "ANTHROPIC_BASE_URL": server.url,
            "ANTHROPIC_API_KEY": EXAMPLE_KEY,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            **env_extra,
        }
        for args, stdin in steps:
            result = subprocess.run(
                ["claude", *args],
                input=stdin,
                capture_output=True,
                text=True,
                env=env,
                cwd=project,
                timeout=180,
            )
            print(
                f"{name}: claude {' '.join(args)} → {result.returncode} {result.stdout[-200:]!r} {result.stderr[-300:]!r}"
            )
    server.stop()
    for i, (path, headers, body) in enumerate(server.posts):
        record = scrubbed(path, headers, body, server.port)
        (out / f"{name}-{i}.json").write_text(
            json.dumps(record, indent=1, ensure_ascii=False) + "\n"
        )
    return len(server.posts)


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    chosen = argv[1:] or list(SCENARIOS)
    for name in chosen:
        count = run_scenario(name, SCENARIOS[name], out, SCENARIO_ENV.get(name, {}))
        print(f"{name}: {count} requests")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
