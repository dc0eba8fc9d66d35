"""Sticky decisions and memory: what every tool-loop request pays, and the sidecar's footprint.

Uses the random-weight model of Arch-Router's exact shape that router_bench.py builds (and
caches) and the captured Claude Code requests. Prints the median cost of a sticky decision
(the whole router stage: window, hash, cache hit) against a fresh one in the same run, and
the process's resident memory with the model loaded.

    python benchmarks/sticky_bench.py [--repeats 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import router_bench

from extproc.app import build_gateway
from extproc.config import parse
from extproc.decision import Request, decide
from extproc.router.engine import ArchRouter
from extproc.routing import RouterStage

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "claude-code"


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MiB."""
    fields = dict(
        line.split(":", 1)
        for line in Path("/proc/self/status").read_text().splitlines()
        if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def config_text(model_dir: Path) -> str:
    routes = "".join(
        f"      - {{name: {name}, description: '{description}'}}\n"
        for name, description in router_bench.ROUTES
    )
    provider = "  - model: anthropic/claude-sonnet-4-5\n    routing_preferences:\n"
    return f"llm_providers:\n{provider}{routes}routing: {{model_dir: {model_dir}}}\n"


async def measure(stage: RouterStage, body: dict, repeats: int) -> tuple[float, float]:
    config = parse(config_text(Path(stage.routing.model_dir)))
    stages = build_gateway(config, stage).stages
    request = Request(body["model"], body, "/v1/messages")
    started = time.perf_counter()
    fresh = await decide(config, request, stages)
    fresh_s = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        sticky = await decide(config, request, stages)
        times.append(time.perf_counter() - started)
    assert sticky.source == "sticky" and sticky.route == fresh.route
    return fresh_s, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    model_dir = router_bench.build_model(router_bench.corpus())
    before = rss_mib()[0]
    model = ArchRouter(model_dir, device="cpu")
    model.classify(router_bench.ROUTES, [[{"role": "user", "content": "warm up"}]])
    loaded = rss_mib()
    print(f"resident memory: {before:.0f} MiB before loading, {loaded[0]:.0f} MiB with the model")
    print(f"{'request':<16} {'body KB':>8} {'fresh s':>8} {'sticky ms':>10} {'ratio':>8}")
    for name in ("first-turn", "tool-loop", "interactive-main"):
        body = json.loads((FIXTURES / f"{name}.json").read_text())["body"]
        stage = RouterStage(parse(config_text(model_dir)).routing)
        stage.attach(model)
        fresh, sticky = asyncio.run(measure(stage, body, args.repeats))
        size = len(json.dumps(body)) / 1024
        print(
            f"{name:<16} {size:>8.0f} {fresh:>8.2f} {sticky * 1000:>10.3f} {fresh / sticky:>7.0f}x"
        )
    print(f"peak resident memory: {rss_mib()[1]:.0f} MiB")
    model.close()


if __name__ == "__main__":
    main()
