"""`extproc up`: one command that runs Envoy and the sidecar, and fails fast and clearly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import gateway_config, gateway_ports, start_gateway, stop_gateway


def pid_running(command_part: str) -> int:
    """The pid of the process whose NUL-separated command line contains `command_part`."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if command_part.encode() in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    raise LookupError(command_part)


def envoy_pid(gateway) -> int:
    """The pid of the first Envoy that `extproc up` started for `gateway`."""
    ready = next(line for line in gateway.output if "gateway ready" in line)
    run_dir = ready.rpartition("(envoy config: ")[2].rstrip(")")
    return pid_running(f"{run_dir}/envoy-0.yaml")


def ports() -> dict[str, int]:
    return gateway_ports()


def test_port_taken_fails_fast_naming_the_setting(tmp_path, fake_anthropic, fake_deepseek):
    chosen = ports()
    config = tmp_path / "config.yaml"
    config.write_text(gateway_config(fake_anthropic, fake_deepseek, **chosen))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", chosen["listener"]))
        busy.listen()
        result = subprocess.run(
            [sys.executable, "-m", "extproc", "up", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"127.0.0.1:{chosen['listener']} (listener.port) is not available" in result.stderr


def test_up_serves_then_stops_both_processes_on_sigterm(tmp_path, fake_anthropic, fake_deepseek):
    chosen = ports()
    gateway = start_gateway(
        gateway_config(fake_anthropic, fake_deepseek, **chosen), tmp_path, chosen["listener"]
    )
    response = httpx.post(
        f"{gateway.url}/v1/messages",
        json={"model": "deep", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200
    assert any(line.startswith("The router model is not at") for line in gateway.output)
    assert any(line.startswith("Offline: katanemo/Arch-Router-1.5B") for line in gateway.output)
    assert stop_gateway(gateway) == 0
    for port in chosen.values():
        with socket.socket() as sock:
            # SO_REUSEADDR, as servers bind: only a process still listening makes this fail.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))


def test_up_exits_when_envoy_dies(tmp_path, fake_anthropic, fake_deepseek):
    """Only the sidecar is restarted (tests/test_faults.py); without Envoy there is no
    gateway, so `up` stops the sidecar and says so."""
    chosen = ports()
    gateway = start_gateway(
        gateway_config(fake_anthropic, fake_deepseek, **chosen), tmp_path, chosen["listener"]
    )
    os.kill(envoy_pid(gateway), signal.SIGKILL)
    assert gateway.process.wait(30) == 1
    assert any("envoy exited with code -9" in line for line in gateway.output)
