"""What reading an Anthropic-format answer's token counts costs, per streamed answer.

Starts the tests' Anthropic-format fake, streaming one SSE event per word (each its own HTTP
chunk, as a provider streams tokens), and real gateways (`extproc up`: Envoy + sidecar) on
the same config but for how the counts are read:
  lua      - this tree, listener.log_tokens off: Envoy's Lua filter (extproc/control/usage.lua)
             reads them in Envoy;
  lua-no-session - the same, for requests without Claude Code's session header: the
             filter then makes no report (the report's own cost, in one tree);
  sidecar  - this tree, log_tokens on: the sidecar reads every chunk (a round trip each);
and, with `--before DIR` (a checkout of an earlier commit, e.g. `git archive main`):
  before   - that tree, log_tokens off: nothing reads the answer (no counts at all);
  before+log_tokens - that tree, log_tokens on.
Each round sends every gateway the same number of sequential streaming requests on one
connection, in turn, so that the machine's load falls on all of them alike; all in one Claude
Code session (its header), so that this tree's Lua filter reports each answer to the
session's record too (one asynchronous call after the answer). Reported per answer: the
median time to the whole answer, and the CPU time the gateway's processes (Envoy, sidecar)
spent, from /proc; and the session's cost on the health port at the end.

    python benchmarks/usage_bench.py [--words 400] [--requests 40] [--rounds 5] [--before DIR]
    python benchmarks/usage_bench.py --smoke
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.datapath_bench import process_tree_cpu
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway import gateway_ports, start_gateway, stop_gateway

CONFIG = """\
listener: {{port: {listener}, admin_port: {admin}, log_tokens: {log_tokens}}}
sidecar: {{port: {sidecar}, health_port: {health}}}
llm_providers:
  - model: anthropic/claude-sonnet-4-5
    base_url: {url}
"""
BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1000,
    "stream": True,
    "messages": [{"role": "user", "content": "PACE-0 CACHE-20000-3000"}],
}
SESSION = "usage-bench"
HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
IN_SESSION = {**HEADERS, "x-claude-code-session-id": SESSION}


def answer_time(client: httpx.Client, url: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    with client.stream("POST", url, json=BODY, headers=headers) as response:
        for _ in response.iter_raw():
            pass
    return time.perf_counter() - started


def session_cost_at(health_port: int) -> float | None:
    """The session's cost on a gateway's health port (None: no session or no cost)."""
    answer = httpx.get(f"http://127.0.0.1:{health_port}/sessions/{SESSION}")
    return answer.json()["cost_usd"] if answer.status_code == 200 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=400, help="events per streamed answer")
    parser.add_argument("--requests", type=int, default=40, help="per gateway per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before", type=Path, help="a checkout of an earlier commit")
    parser.add_argument("--smoke", action="store_true", help="2 requests, 1 round (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.words, args.requests, args.rounds = 50, 2, 1
    fake = FakeAnthropic(answer=" ".join(["word"] * args.words)).start()
    trees = [
        ("lua", None, "false", IN_SESSION),
        ("lua-no-session", None, "false", HEADERS),
        ("sidecar", None, "true", IN_SESSION),
    ]
    if args.before:
        trees += [
            ("before", args.before, "false", IN_SESSION),
            ("before+log_tokens", args.before, "true", IN_SESSION),
        ]
    workdir = Path(tempfile.mkdtemp(prefix="usage-bench-"))
    gateways = {}
    health: dict[str, int] = {}
    try:
        headers = {name: sent for name, *_, sent in trees}
        for name, tree, log_tokens, _ in trees:
            ports = gateway_ports()
            (workdir / name).mkdir()
            config = CONFIG.format(url=fake.url, log_tokens=log_tokens, **ports)
            env = {"PYTHONPATH": str(tree.resolve())} if tree else None
            gateways[name] = start_gateway(config, workdir / name, ports["listener"], env=env)
            health[name] = ports["health"]
        times: dict[str, list[float]] = {name: [] for name in gateways}
        cpu: dict[str, float] = dict.fromkeys(gateways, 0.0)
        with httpx.Client(timeout=60) as client:
            for name, gateway in gateways.items():  # warm up
                answer_time(client, f"{gateway.url}/v1/messages", headers[name])
            for _ in range(args.rounds):
                for name, gateway in gateways.items():
                    url = f"{gateway.url}/v1/messages"
                    before = process_tree_cpu(gateway.process.pid)
                    sent = headers[name]
                    times[name] += [answer_time(client, url, sent) for _ in range(args.requests)]
                    cpu[name] += process_tree_cpu(gateway.process.pid) - before
        time.sleep(1.5)  # Envoy flushes its access log about once a second
        counted = {
            name: sum(1 for e in g.log_lines() if isinstance(e.get("cost_usd"), int | float))
            for name, g in gateways.items()
        }
        session_cost = {name: session_cost_at(port) for name, port in health.items()}
    finally:
        for gateway in gateways.values():
            stop_gateway(gateway)
        fake.stop()
    answers = args.requests * args.rounds
    print(
        f"{answers} streamed answers per gateway ({args.words} events each, one HTTP chunk an "
        f"event), {args.rounds} rounds, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'gateway':<20} {'answer p50 ms':>14} {'gateway CPU ms/answer':>22} {'with cost':>10}"
        f" {'session $':>10}"
    )
    for name in gateways:
        p50 = statistics.median(times[name]) * 1000
        per_answer = cpu[name] / len(times[name]) * 1000
        cost = session_cost[name]
        print(
            f"{name:<20} {p50:>14.2f} {per_answer:>22.2f} {counted[name]:>10}"
            f" {'-' if cost is None else f'{cost:.4f}':>10}"
        )


if __name__ == "__main__":
    main()
