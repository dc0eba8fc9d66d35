"""Load: 64 concurrent streaming conversations through Envoy and the sidecar, half native,
half translated, at a provider's pace; every answer whole and its own, memory given back."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path

import anthropic

from extproc.config import load
from tests.support.processes import sidecar_pid
from tests.support.requests import get

CONVERSATIONS = 64
TURNS = 3
PACE_MS = 20
RSS_SLACK_MIB = 30


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


async def conversation(client: anthropic.AsyncAnthropic, n: int) -> int:
    """A few streamed turns; each answer must end with this conversation's own marker."""
    model = "claude-sonnet-4-5" if n % 2 else "openai/gpt-4.1"
    marker = f"MARK-{uuid.uuid4().hex}"
    messages: list[dict] = []
    for turn in range(TURNS):
        messages.append({"role": "user", "content": f"turn {turn} PACE-{PACE_MS} {marker}"})
        async with client.messages.stream(model=model, max_tokens=64, messages=messages) as s:
            final = await s.get_final_message()
        [block] = final.content
        assert block.text.endswith(f" {marker}"), (marker, block.text)
        assert final.stop_reason == "end_turn"
        messages.append({"role": "assistant", "content": block.text})
    return TURNS


async def run_load(url: str, count: int) -> int:
    client = anthropic.AsyncAnthropic(base_url=url, api_key="sk-ant-load", max_retries=0)
    async with client:
        done = await asyncio.gather(*(conversation(client, n) for n in range(count)))
    return sum(done)


def wait_until_no_open_streams(metrics_url: str, timeout: float = 10) -> None:
    """Every stream is closed once the clients have their answers; the sidecar may count the
    last few closes a moment later."""
    deadline = time.monotonic() + timeout
    while "extproc_open_streams 0.0" not in get(metrics_url)[1]:
        assert time.monotonic() < deadline, "streams still open after every answer arrived"
        time.sleep(0.05)


def test_64_concurrent_streaming_conversations(gateway, fakes):
    sidecar = sidecar_pid(gateway)
    asyncio.run(run_load(gateway.url, 8))  # warm-up: connections, imports, caches
    baseline = rss_mib(sidecar)

    started = time.monotonic()
    answered = asyncio.run(run_load(gateway.url, CONVERSATIONS))
    elapsed = time.monotonic() - started

    assert answered == CONVERSATIONS * TURNS
    health = load(gateway.config_path).sidecar.health_port
    wait_until_no_open_streams(f"http://127.0.0.1:{health}/metrics")
    after = rss_mib(sidecar)
    assert after < baseline + RSS_SLACK_MIB, (baseline, after)
    print(
        f"\nload: {CONVERSATIONS} conversations x {TURNS} streamed turns in {elapsed:.1f}s; "
        f"sidecar RSS {baseline:.0f} MiB before, {after:.0f} MiB after"
    )
