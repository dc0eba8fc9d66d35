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


def run_folder(gateway) -> Path:
    """Where `extproc up` keeps Envoy's files and the sidecar's copy of the config."""
    ready = next(line for line in gateway.output if "gateway ready" in line)
    return Path(ready.rpartition("(envoy config: ")[2].rstrip(")"))


def children(pid: int) -> list[str]:
    """The state letter and name of each child process of `pid` (`Z`: exited, never reaped)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, parent = text[text.rindex(")") + 2 :].split()[:2]
        if int(parent) == pid:
            found.append(f"{state} {text[text.index('(') + 1 : text.rindex(')')]}")
    return found


def envoy_pid(gateway) -> int:
    """The pid of the Envoy that `extproc up` runs for `gateway`."""
    return pid_running(f"{run_folder(gateway)}/envoy/bootstrap.yaml")


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


def sidecar_config(gateway) -> Path:
    """The copy of the config that `extproc up` last accepted, which its sidecar runs on."""
    return run_folder(gateway) / "config.yaml"


def sidecar_pid(gateway) -> int:
    """The sidecar `extproc up` runs, on the copy of the config it last accepted."""
    return pid_running(f"extproc\0serve\0{sidecar_config(gateway)}")
