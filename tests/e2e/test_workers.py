"""`extproc up --workers N`: N sidecar processes share the ports, and stop together."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import grpc
import httpx
import orjson
from envoy_data_plane.envoy.service.ext_proc.v3 import (
    HttpBody,
    ProcessingRequest,
    ProcessingResponse,
)

from extproc.config import SIDECAR_SECRET_VAR
from tests.support.ext_proc import METHOD, headers_message
from tests.support.gateway import (
    Gateway,
    gateway_config,
    gateway_ports,
    start_gateway,
    stop_gateway,
)
from tests.support.processes import pid_running, sidecar_config

CONNECTIONS = 16
"""The kernel spreads connections over the workers by a hash of their ports: 16 of them all
land on one of two workers once in 2**15 runs."""


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


def socket_inodes(pid: int | str) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def tcp_connections() -> list[tuple[int, int, str]]:
    """Established TCP connections: (local port, remote port, socket inode). gRPC's sockets
    are IPv6 ones even to 127.0.0.1 (v4-mapped addresses)."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01":
                local, remote = (int(fields[i].rsplit(":", 1)[1], 16) for i in (1, 2))
                rows.append((local, remote, fields[9]))
    return rows


SECRET = "test-sidecar-secret-0123456789"
"""Given to `extproc up`, which would otherwise make one that this test can't present."""


def exchange(channel: grpc.Channel) -> list[ProcessingResponse]:
    """One Messages request, as Envoy sends it: headers, then the body."""
    body = orjson.dumps({"model": "deep", "max_tokens": 5, "messages": []})
    messages = [
        headers_message("/v1/messages"),
        ProcessingRequest(request_body=HttpBody(body=body, end_of_stream=True)),
    ]
    process = channel.stream_stream(
        METHOD, request_serializer=bytes, response_deserializer=ProcessingResponse.parse
    )
    return list(process(iter(messages), metadata=(("x-extproc-secret", SECRET),), timeout=10))


def two_workers(fake_anthropic, fake_deepseek, tmp_path: Path) -> tuple[Gateway, dict[str, int]]:
    """`extproc up --workers 2` started with the shared secret, and the ports it uses."""
    ports = gateway_ports()
    gateway = start_gateway(
        gateway_config(fake_anthropic, fake_deepseek, **ports),
        tmp_path,
        ports["listener"],
        env={SIDECAR_SECRET_VAR: SECRET},
        args=("--workers", "2"),
    )
    return gateway, ports


def test_two_workers_serve_and_stop_together(fake_anthropic, fake_deepseek, fakes, tmp_path):
    gateway, ports = two_workers(fake_anthropic, fake_deepseek, tmp_path)
    channels = [
        grpc.insecure_channel(
            f"127.0.0.1:{ports['sidecar']}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        for _ in range(CONNECTIONS)
    ]
    try:
        workers = worker_pids(sidecar_config(gateway))
        assert len(workers) == 2
        body = {"model": "deep", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
        response = httpx.post(f"{gateway.url}/v1/messages", json=body, timeout=10)
        assert response.status_code == 200 and len(fakes[1].received) == 1

        # Each connection of ours carries one whole exchange, answered with a route...
        for channel in channels:
            _, on_body = exchange(channel)
            mutation = on_body.request_body.response.header_mutation
            assert "x-extproc-cluster" in {o.header.key for o in mutation.set_headers}
        # ...and the server end of each is held by one worker: both workers answered some.
        ours = {local for local, remote, inode in tcp_connections() if remote == ports["sidecar"]}
        ours &= {local for local, _, inode in tcp_connections() if inode in socket_inodes("self")}
        assert len(ours) == CONNECTIONS
        served = {
            pid: sum(
                1
                for local, remote, inode in tcp_connections()
                if local == ports["sidecar"] and remote in ours and inode in socket_inodes(pid)
            )
            for pid in workers
        }
        assert sum(served.values()) == CONNECTIONS
        assert all(served.values()), served
    finally:
        for channel in channels:
            channel.close()
        assert stop_gateway(gateway) == 0
    assert worker_pids(sidecar_config(gateway)) == []


def test_a_dead_worker_is_started_again_while_the_others_serve(
    fake_anthropic, fake_deepseek, fakes, tmp_path
):
    gateway, _ = two_workers(fake_anthropic, fake_deepseek, tmp_path)
    try:
        first, second = worker_pids(sidecar_config(gateway))
        os.kill(first, signal.SIGKILL)
        body = {"model": "deep", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
        deadline = time.monotonic() + 15
        while (pids := worker_pids(sidecar_config(gateway))) in ([second], [first, second]):
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
    gateway, _ = two_workers(fake_anthropic, fake_deepseek, tmp_path)
    try:
        old = set(worker_pids(sidecar_config(gateway)))
        os.kill(
            pid_running(f"extproc\0serve\0{sidecar_config(gateway)}\0--workers"), signal.SIGKILL
        )
        deadline = time.monotonic() + 20
        while (pids := set(worker_pids(sidecar_config(gateway)))) & old or len(pids) != 2:
            assert time.monotonic() < deadline, f"workers {pids}, before {old}"
            time.sleep(0.2)
        body = {"model": "deep", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
        deadline = time.monotonic() + 20
        while httpx.post(f"{gateway.url}/v1/messages", json=body, timeout=10).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        assert stop_gateway(gateway) == 0
