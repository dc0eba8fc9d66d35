"""Sticky decisions and memory: what every tool-loop request pays, and the sidecar's footprint.

Uses the random-weight model of Arch-Router's exact shape that router_bench.py builds (and
caches) and the captured Claude Code requests. Prints the median cost of a sticky decision
(the whole router stage: window, hash, cache hit) against a fresh one in the same run, and
the process's resident memory with the model loaded. The last row pastes a 60 KB log into
the tool loop's user text: the window's token counts are then the costly part.

    python benchmarks/sticky_bench.py [--repeats 200] [--model DIR] [--smoke]

``--model`` uses a converted model you already have (the tests' tiny one in CI, with
``--smoke``: a few repeats, to check that it works; its numbers mean nothing).
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

from extproc.app import build_runtime
from extproc.config import parse
from extproc.decisions.decision import Request, decide
from extproc.decisions.router.engine import ArchRouter
from extproc.decisions.routing import RouterStage

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


def with_pasted_log(body: dict) -> dict:
    """The body with a 60 KB log pasted into its latest user text (the window's end)."""
    log = "".join(f"2026-11-26 ERROR worker {i} failed: connection reset\n" for i in range(1200))
    for message in reversed(body["messages"]):
        blocks = message["content"] if message["role"] == "user" else ""
        texts = [b for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
        texts = [b for b in texts if not b["text"].startswith("<system-reminder>")]
        if texts:
            texts[-1]["text"] += "\n" + log
            return body
    raise ValueError("no user text to paste into")


async def measure(stage: RouterStage, body: dict, repeats: int) -> tuple[float, float]:
    """Each sticky request is parsed anew, as the sidecar parses each request's JSON."""
    config = parse(config_text(Path(stage.routing.model_dir)))
    stages = build_runtime(config, stage).stages
    raw = json.dumps(body)
    started = time.perf_counter()
    fresh = await decide(config, Request(body["model"], body, "/v1/messages"), stages)
    fresh_s = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        request = Request(body["model"], json.loads(raw), "/v1/messages")
        started = time.perf_counter()
        sticky = await decide(config, request, stages)
        times.append(time.perf_counter() - started)
    assert sticky.source == "sticky" and sticky.route == fresh.route
    return fresh_s, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--model", type=Path, help="a converted model directory to use instead")
    parser.add_argument("--smoke", action="store_true", help=router_bench.SMOKE_HELP)
    args = parser.parse_args()
    if args.smoke:
        args.repeats = 3
    model_dir = args.model or router_bench.build_model()
    before = rss_mib()[0]
    model = ArchRouter(model_dir, device="cpu")
    model.classify(router_bench.ROUTES, [[{"role": "user", "content": "warm up"}]])
    loaded = rss_mib()
    print(f"resident memory: {before:.0f} MiB before loading, {loaded[0]:.0f} MiB with the model")
    print(f"{'request':<22} {'body KB':>8} {'fresh s':>8} {'sticky ms':>10} {'ratio':>8}")
    for name in ("first-turn", "tool-loop", "interactive-main", "tool-loop + pasted log"):
        body = json.loads((FIXTURES / f"{name.split()[0]}.json").read_text())["body"]
        if name.endswith("log"):
            body = with_pasted_log(body)
        stage = RouterStage(parse(config_text(model_dir)).routing)
        stage.attach(model)
        fresh, sticky = asyncio.run(measure(stage, body, args.repeats))
        size = len(json.dumps(body)) / 1024
        print(
            f"{name:<22} {size:>8.0f} {fresh:>8.2f} {sticky * 1000:>10.3f} {fresh / sticky:>7.0f}x"
        )
    print(f"peak resident memory: {rss_mib()[1]:.0f} MiB")
    model.close()


if __name__ == "__main__":
    main()
