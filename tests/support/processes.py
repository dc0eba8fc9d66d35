"""The gateway's processes, found and started as a user's shell would: by command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support.gateway import PROVIDER_KEYS
from tests.support.requests import get


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


def serve(config: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "extproc", "serve", str(config)],
        stderr=subprocess.DEVNULL,
        env={**os.environ, **PROVIDER_KEYS, **(env or {})},
    )


def wait_until(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while get(url)[0] != 200:
        assert time.monotonic() < deadline, f"{url} not ready"
        time.sleep(0.1)


def sidecar_pid(gateway) -> int:
    return pid_running(f"extproc\0serve\0{gateway.config_path}")
