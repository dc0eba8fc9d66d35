"""How long `extproc statusline` takes, as Claude Code runs it after every message.

Each run is a fresh process (`python -m extproc statusline --health URL`, Claude Code's JSON on
stdin) against the sidecar's real health handler holding one session, against a port where
nothing listens (the gateway down), and with `--config FILE` (which loads the config to find
the health port). The baseline, in the same run and interleaved with the
others, is the same interpreter doing nothing (`python -c pass`): what any Python command
pays to start in this environment.

    python benchmarks/statusline_bench.py [--runs N] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extproc.app import build_runtime  # noqa: E402
from extproc.config import parse  # noqa: E402
from extproc.decisions.decision import Decision  # noqa: E402
from extproc.decisions.routing import RouterStage  # noqa: E402
from extproc.proxy.server import ExtProcServer  # noqa: E402

SESSION = "6cc5e38d-2e3b-46b4-8640-d604974c71e1"
CONFIG_TEXT = "llm_providers:\n  - {model: openai/gpt-5.2-codex, access_key: k}\n"
CONFIG = parse(CONFIG_TEXT)


def health_port() -> tuple[str, threading.Thread]:
    """The sidecar's health handler, in a thread, holding one routed session."""
    server = ExtProcServer(build_runtime(CONFIG, RouterStage(CONFIG.routing)))
    decision = Decision("router", CONFIG.providers[0], "claude", "code generation", 412.0)
    server.runtime.sessions.decided(SESSION, decision)
    server.runtime.sessions.answered(SESSION, {"input_tokens": 900}, cost_usd=0.84)
    loop = asyncio.new_event_loop()
    listening = loop.run_until_complete(asyncio.start_server(server._serve_health, "127.0.0.1", 0))
    port = listening.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{port}", thread


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def timed(command: list[str], stdin: str) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=True)
    return (time.perf_counter() - start) * 1000, result.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--smoke", action="store_true", help="3 runs: checks that it works")
    args = parser.parse_args()
    runs = 3 if args.smoke else args.runs
    up, _ = health_port()
    statusline = [sys.executable, "-m", "extproc", "statusline", "--health"]
    claude_json = json.dumps({"session_id": SESSION})
    config = Path(tempfile.mkdtemp()) / "config.yaml"
    port = up.rsplit(":", 1)[1]
    config.write_text(f"sidecar: {{health_port: {port}}}\n{CONFIG_TEXT}", encoding="utf-8")
    by_config = [sys.executable, "-m", "extproc", "statusline", "--config", str(config)]
    cases = {
        "python -c pass (baseline)": ([sys.executable, "-c", "pass"], ""),
        "statusline, known session": ([*statusline, up], claude_json),
        "statusline, gateway down": ([*statusline, closed_port()], '{"session_id": "s"}'),
        "statusline --config FILE": (by_config, claude_json),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    shown: dict[str, str] = {}
    for _ in range(runs):  # interleaved: load from elsewhere falls on every case alike
        for name, (command, stdin) in cases.items():
            elapsed, shown[name] = timed(command, stdin)
            times[name].append(elapsed)
    print(f"{runs} runs each, interleaved")
    print(f"{'case':<28} {'median ms':>10} {'p90 ms':>8}  prints")
    for name, values in times.items():
        p90 = statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]
        print(f"{name:<28} {statistics.median(values):>10.1f} {p90:>8.1f}  {shown[name]}")


if __name__ == "__main__":
    main()
