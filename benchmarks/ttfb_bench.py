"""Time to first byte added by the gateway, native and translated, against direct calls.

Starts the local fake providers (the ones the tests use) and a real gateway (`extproc up`:
Envoy + sidecar, no router model: decisions are explicit), then times streaming requests
until the first body byte arrives: straight to each fake, and through the gateway. Every
request carries Claude Code's captured first-turn body (78 KB: system, 24 tools, reminders);
the OpenAI-format fake gets it directly as the gateway translates it.

    python benchmarks/ttfb_bench.py [--requests 200] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extproc.translate.openai_chat import translate_request
from tests.support.captured import captured
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import (
    PROVIDER_KEYS,
    gateway_config,
    gateway_ports,
    start_gateway,
    stop_gateway,
)

CAPTURED = captured("first-turn")["body"]


def ttfb(client: httpx.Client, url: str, body: dict, headers: dict[str, str]) -> float:
    data = json.dumps(body).encode()  # serialised before the clock starts
    headers = {**headers, "content-type": "application/json"}
    started = time.perf_counter()
    first = 0.0
    with client.stream("POST", url, content=data, headers=headers) as response:
        for _ in response.iter_raw():
            first = first or time.perf_counter() - started
    return first


def series(
    client: httpx.Client, url: str, body: dict, headers: dict[str, str], n: int, warm: int
) -> list[float]:
    for _ in range(warm):  # warm connections and caches
        ttfb(client, url, body, headers)
    return [ttfb(client, url, body, headers) for _ in range(n)]


NATIVE_ONLY = """\
listener: {{port: {listener}, admin_port: {admin}}}
sidecar: {{port: {sidecar}, health_port: {health}}}
llm_providers:
  - model: anthropic/claude-sonnet-4-5
    base_url: {url}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="3 requests a path, 1 to warm up: checks that it works (CI); numbers mean nothing",
    )
    args = parser.parse_args()
    if args.smoke:
        args.requests = 3
    warm = 1 if args.smoke else 10
    anthropic = FakeAnthropic().start()
    deepseek = FakeAnthropic().start()
    openai = FakeOpenAI(expected_key=PROVIDER_KEYS["TEST_OPENAI_KEY"]).start()
    workdir = Path(tempfile.mkdtemp(prefix="ttfb-"))
    # Native-only config: the sidecar skips the response phase. Mixed config: it reads every
    # answer's headers (some providers need translation) and, with log_tokens, the bodies.
    native_ports, mixed_ports = gateway_ports(), gateway_ports()
    (workdir / "native").mkdir()
    (workdir / "mixed").mkdir()
    native_config = NATIVE_ONLY.format(url=anthropic.url, **native_ports)
    native_gw = start_gateway(native_config, workdir / "native", native_ports["listener"])
    mixed = gateway_config(anthropic, deepseek, openai, **mixed_ports)
    gateway = start_gateway(mixed, workdir / "mixed", mixed_ports["listener"])
    native = {**CAPTURED, "model": "claude-sonnet-4-5", "stream": True}
    anthropic_headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    openai_body = json.loads(translate_request(native, model="gpt-4.1"))
    openai_headers = {"authorization": f"Bearer {PROVIDER_KEYS['TEST_OPENAI_KEY']}"}
    cases = [
        ("anthropic direct", f"{anthropic.url}/v1/messages", native, anthropic_headers),
        ("anthropic via gateway", f"{native_gw.url}/v1/messages", native, anthropic_headers),
        (
            "anthropic via mixed gateway + tokens",
            f"{gateway.url}/v1/messages",
            native,
            anthropic_headers,
        ),
        ("openai direct", f"{openai.url}/v1/chat/completions", openai_body, openai_headers),
        (
            "openai via gateway (translated)",
            f"{gateway.url}/v1/messages",
            {**native, "model": "openai/gpt-4.1"},
            anthropic_headers,
        ),
    ]
    results = {}
    try:
        with httpx.Client(timeout=30) as client:
            for name, url, body, headers in cases:
                results[name] = series(client, url, body, headers, args.requests, warm)
    finally:
        stop_gateway(gateway)
        stop_gateway(native_gw)
    size = len(json.dumps(native)) / 1000
    print(
        f"time to first byte, {args.requests} streaming requests each after {warm} to warm up,"
        f" 1 connection, captured first-turn body ({size:.0f} KB)"
    )
    print(f"{'path':<38} {'p50 ms':>8} {'p99 ms':>8}")
    for name, times in results.items():
        p99 = statistics.quantiles(times, n=100)[98]
        print(f"{name:<38} {statistics.median(times) * 1000:>8.2f} {p99 * 1000:>8.2f}")
    for kind in ("anthropic", "openai"):
        direct = statistics.median(results[f"{kind} direct"])
        for name, times in results.items():
            if name.startswith(f"{kind} via"):
                added = (statistics.median(times) - direct) * 1000
                print(f"added by the gateway, {name}: {added:.2f} ms at p50")


if __name__ == "__main__":
    main()
