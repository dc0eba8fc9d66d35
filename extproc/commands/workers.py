"""`extproc serve --workers N`: N sidecar processes sharing the gRPC and health ports.

One Python process uses one core for protobuf, JSON and routing work; the kernel spreads
Envoy's connections over processes that listen with SO_REUSEPORT. Each worker keeps its own
sticky cache (decisions are deterministic, so workers agree) and its own router model (N
times the memory). This parent only supervises: it forwards SIGTERM, SIGINT and SIGHUP, and
starts a worker that dies again, with backoff (`supervise.Supervised`), while the others
keep serving.
"""

from __future__ import annotations

import signal
import sys
import time

from extproc.commands.supervise import Supervised


def run_workers(config_path: str, count: int, grace: float, with_envoy: bool = False) -> int:
    command = [sys.executable, "-m", "extproc", "serve", config_path, "--reuse-port"]
    command += ["--grace", str(grace), "--no-config-warnings"]
    command += ["--with-envoy"] if with_envoy else []
    workers = [Supervised(f"worker {i + 1}", command) for i in range(count)]
    stopping = False

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = stopping or signum != signal.SIGHUP
        for worker in workers:
            worker.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    while not stopping:
        for worker in workers:
            worker.check()
        time.sleep(0.2)
    codes = [worker.process.wait() for worker in workers]
    return 0 if not any(codes) else 1
