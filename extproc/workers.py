"""`extproc serve --workers N`: N sidecar processes sharing the gRPC and health ports.

One Python process uses one core for protobuf, JSON and routing work; the kernel spreads
Envoy's connections over processes that listen with SO_REUSEPORT. Each worker keeps its own
sticky cache (decisions are deterministic, so workers agree) and its own router model (N
times the memory). This parent only supervises: it forwards SIGTERM, SIGINT and SIGHUP, and
stops every worker if one dies.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time


def run_workers(config_path: str, count: int, grace: float) -> int:
    command = [
        *(sys.executable, "-m", "extproc", "serve", config_path),
        *("--reuse-port", "--no-config-warnings"),
    ]
    workers = [subprocess.Popen([*command, "--grace", str(grace)]) for _ in range(count)]
    stopping = False

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = stopping or signum != signal.SIGHUP
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    while not stopping and all(worker.poll() is None for worker in workers):
        time.sleep(0.2)
    if not stopping:
        dead = next(w for w in workers if w.poll() is not None)
        print(f"a worker exited with code {dead.returncode}; stopping", file=sys.stderr)
        forward(signal.SIGTERM, None)
    codes = [worker.wait() for worker in workers]
    return 0 if stopping and not any(codes) else 1
