"""`extproc up --workers N`: N sidecar processes share the ports, and stop together."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import gateway_config, gateway_ports, start_gateway, stop_gateway


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
