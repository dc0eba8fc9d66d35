"""`extproc up --workers N`: N sidecar processes share the ports, and stop together."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from tests.conftest import gateway_config, gateway_ports, start_gateway, stop_gateway
from tests.test_up import pid_running


def worker_pids(config_path: Path) -> list[int]:
    """Sidecar worker processes for this config (they listen with --reuse-port)."""
    marker = f"{config_path}\0--reuse-port".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_two_workers_serve_and_stop_together(fake_anthropic, fake_deepseek, fakes, tmp_path):
    ports = gateway_ports()
    gateway = start_gateway(
        gateway_config(fake_anthropic, fake_deepseek, **ports),
        tmp_path,
        ports["listener"],
        args=("--workers", "2"),
    )
    try:
        assert len(worker_pids(gateway.config_path)) == 2
        body = {"model": "deep", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
        for _ in range(6):  # new connections each time: the kernel spreads them
            response = httpx.post(f"{gateway.url}/v1/messages", json=body, timeout=10)
            assert response.status_code == 200
        assert len(fakes[1].received) == 6
    finally:
        assert stop_gateway(gateway) == 0
    assert worker_pids(gateway.config_path) == []


def test_a_dead_worker_is_started_again_while_the_others_serve(
    fake_anthropic, fake_deepseek, fakes, tmp_path
):
    ports = gateway_ports()
    gateway = start_gateway(
        gateway_config(fake_anthropic, fake_deepseek, **ports),
        tmp_path,
        ports["listener"],
        args=("--workers", "2"),
    )
    try:
        first, second = worker_pids(gateway.config_path)
        os.kill(first, signal.SIGKILL)
        body = {"model": "deep", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
        deadline = time.monotonic() + 15
        while (pids := worker_pids(gateway.config_path)) in ([second], [first, second]):
            # The other worker serves meanwhile (a connection to the dead one may get 503).
            response = httpx.post(f"{gateway.url}/v1/messages", json=body, timeout=10)
            assert response.status_code in (200, 503)
            assert time.monotonic() < deadline, "the worker was not started again"
            time.sleep(0.2)
        assert second in pids and len(pids) == 2
        assert any(
            line.startswith("worker ") and "was stopped by SIGKILL" in line
            for line in gateway.output
        )
    finally:
        assert stop_gateway(gateway) == 0


def test_workers_of_a_killed_parent_stop_and_up_starts_new_ones(
    fake_anthropic, fake_deepseek, fakes, tmp_path
):
    """Under `extproc up --workers 2`, the workers' parent SIGKILLed: its workers stop with
    it (no orphans left serving an old config on the shared ports) and `up` starts the
    parent again, with two new workers."""
    ports = gateway_ports()
    gateway = start_gateway(
        gateway_config(fake_anthropic, fake_deepseek, **ports),
        tmp_path,
        ports["listener"],
        args=("--workers", "2"),
    )
    try:
        old = set(worker_pids(gateway.config_path))
        os.kill(pid_running(f"extproc\0serve\0{gateway.config_path}\0--workers"), signal.SIGKILL)
        deadline = time.monotonic() + 20
        while (pids := set(worker_pids(gateway.config_path))) & old or len(pids) != 2:
            assert time.monotonic() < deadline, f"workers {pids}, before {old}"
            time.sleep(0.2)
        body = {"model": "deep", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
        deadline = time.monotonic() + 20
        while httpx.post(f"{gateway.url}/v1/messages", json=body, timeout=10).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        assert stop_gateway(gateway) == 0
