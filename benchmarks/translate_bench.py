"""Throughput of the streaming translators (OpenAI SSE → Anthropic SSE) on one core.

Upstream streams are built here in the shape OpenAI-style servers send: one chunk per token
(~4 characters of text or tool arguments), each with its id/model/created envelope; for the
Responses API, one `response.output_text.delta` event per token with its `event:` line, ids
and `obfuscation` padding. They are fed in 16 KiB pieces, as Envoy hands over body chunks.
Also times request translation of the captured Claude Code first turn (78 KB body, 24 tools).

    python benchmarks/translate_bench.py [--mb 4] [--repeats 7] [--smoke]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from extproc.config.contract import contract_for
from extproc.translate import openai_responses
from extproc.translate.openai_chat import StreamTranslator, translate_request

PIECE = 16 * 1024
FIXTURE = Path(__file__).resolve().parent.parent / "tests/fixtures/claude-code/first-turn.json"
SMOKE_HELP = "one run of tiny streams, to check that it works (CI); its numbers mean nothing"
TOKEN_TEXT = "The quick brown fox jumps over the lazy dog; naïve café 日本 😀. "


def _chunk(delta: dict, finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-Bench0123456789",
        "object": "chat.completion.chunk",
        "created": 1754000000,
        "model": "gpt-4.1-2025-04-14",
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


def _tokens(n: int) -> list[str]:
    """`n` token-sized pieces (4 characters) of a repeating multilingual text."""
    text = TOKEN_TEXT * (4 * n // len(TOKEN_TEXT) + 1)
    return [text[i : i + 4] for i in range(0, 4 * n, 4)]


def _end(finish: str) -> bytes:
    usage = {"prompt_tokens": 30000, "completion_tokens": 1000, "total_tokens": 31000}
    last = orjson.dumps({"id": "chatcmpl-Bench0123456789", "choices": [], "usage": usage})
    return _chunk({}, finish) + b"data: " + last + b"\n\ndata: [DONE]\n\n"


def text_stream(mb: float) -> bytes:
    head = _chunk({"role": "assistant", "content": ""})
    n = int(mb * 2**20) // len(_chunk({"content": "abcd"}))
    body = b"".join(_chunk({"content": t}) for t in _tokens(n))
    return head + body + _end("stop")


def tool_stream(mb: float, calls: int, interleave: bool) -> bytes:
    """`calls` parallel tool calls whose arguments (a file's content) stream token by token."""
    sample = _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "abcd"}}]})
    per_call = int(mb * 2**20) // len(sample) // calls
    fragments = []
    for i in range(calls):
        content = "".join(_tokens(per_call))
        args = orjson.dumps({"file_path": f"/tmp/f{i}.txt", "content": content}).decode()
        pieces = [args[k : k + 4] for k in range(0, len(args), 4)]
        head = {"index": i, "id": f"call_{i}", "type": "function"}
        head["function"] = {"name": "Write", "arguments": ""}
        frags = [[head]] + [[{"index": i, "function": {"arguments": p}}] for p in pieces]
        fragments.append(frags)
    if interleave:
        order = [f for group in zip(*fragments, strict=False) for f in group]
    else:
        order = [f for frags in fragments for f in frags]
    start = _chunk({"role": "assistant", "content": None})
    return start + b"".join(_chunk({"tool_calls": f}) for f in order) + _end("tool_calls")


def _responses_event(kind: str, **fields: object) -> bytes:
    body = orjson.dumps({"type": kind, "sequence_number": 1, **fields})
    return b"event: " + kind.encode() + b"\ndata: " + body + b"\n\n"


def responses_text_stream(mb: float) -> bytes:
    """A Responses stream: one output_text delta event per token, as OpenAI sends them."""
    where = {"item_id": "msg_0123456789abcdef0123456789abcdef", "output_index": 0}
    delta = {**where, "content_index": 0, "logprobs": [], "obfuscation": "k2Jx9Qe"}
    response = {"id": "resp_0123456789abcdef", "object": "response", "model": "gpt-5.2-codex"}
    head = _responses_event("response.created", response={**response, "output": []})
    head += _responses_event(
        "response.output_item.added",
        output_index=0,
        item={"id": where["item_id"], "type": "message", "role": "assistant", "content": []},
    )
    sample = _responses_event("response.output_text.delta", delta="abcd", **delta)
    n = int(mb * 2**20) // len(sample)
    body = b"".join(
        _responses_event("response.output_text.delta", delta=t, **delta) for t in _tokens(n)
    )
    usage = {"input_tokens": 30000, "output_tokens": 1000, "total_tokens": 31000}
    tail = _responses_event("response.output_item.done", output_index=0, item={"type": "message"})
    tail += _responses_event("response.completed", response={**response, "usage": usage})
    return head + body + tail


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = [
                line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")
            ]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or platform.machine()


def translate(stream: bytes, translator: type = StreamTranslator) -> int:
    tr = translator(model="routed-model", input_tokens_estimate=30000)
    out = 0
    for i in range(0, len(stream), PIECE):
        out += len(tr.feed(stream[i : i + PIECE]))
    return out + len(tr.finish())


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=4.0, help="upstream MB per stream")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    if args.smoke:
        args.mb, args.repeats = 0.05, 1

    print(f"date: {datetime.date.today()}  python {platform.python_version()}  ", end="")
    print(f"cpu: {cpu_name()} ({os.cpu_count()} cores, 1 used)")
    print(f"median of {args.repeats}, upstream fed in {PIECE // 1024} KiB pieces\n")
    print(f"{'stream':34} {'upstream MB':>11} {'events/s':>10} {'MB/s in':>8} {'MB/s out':>8}")
    chat, responses = StreamTranslator, openai_responses.StreamTranslator
    streams = {
        "text, 1 token a chunk": (text_stream(args.mb), chat),
        "1 tool call, args 1 token a chunk": (tool_stream(args.mb, 1, False), chat),
        "4 parallel calls, sequential": (tool_stream(args.mb, 4, False), chat),
        "4 parallel calls, interleaved": (tool_stream(args.mb, 4, True), chat),
        "Responses: text, 1 token an event": (responses_text_stream(args.mb), responses),
    }
    for name, (stream, translator) in streams.items():
        out = translate(stream, translator)
        seconds = median_seconds(lambda s=stream, t=translator: translate(s, t), args.repeats)
        events = stream.count(b"\n\n")
        mb_in, mb_out = len(stream) / 2**20, out / 2**20
        print(
            f"{name:34} {mb_in:11.1f} {events / seconds:10.0f} "
            f"{mb_in / seconds:8.1f} {mb_out / seconds:8.1f}"
        )

    body = orjson.loads(FIXTURE.read_bytes())["body"]
    seconds = median_seconds(
        lambda: translate_request(body, model="gpt-4.1", max_tokens_cap=32768), args.repeats * 10
    )
    size = FIXTURE.stat().st_size // 1024
    codex = contract_for("openai", "gpt-5.2-codex")
    print(f"\nrequest: first-turn.json ({size} KB) {seconds * 1e3:.2f} ms")
    seconds = median_seconds(
        lambda: openai_responses.translate_request(
            body, model="gpt-5.2-codex", contract=codex, max_tokens_cap=32768
        ),
        args.repeats * 10,
    )
    print(f"request (Responses): first-turn.json ({size} KB) {seconds * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
