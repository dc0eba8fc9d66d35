"""supervise.Supervised: a dead child is started again after a delay that doubles with each
crash, up to a cap, and starts over once the child stayed up."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable

import pytest

from extproc.commands import supervise
from extproc.commands.supervise import Supervised, exit_reason
from tests.support.fake_libc import ctypes_loading

# Children that start in a millisecond, not a Python's 50.
CRASH = ["sh", "-c", "exit 3"]
LIVES = ["sleep", "60"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def crash_and_restart(child: Supervised, clock: Clock) -> float:
    """Let the child die, note it, and return the delay before it was started again."""
    child.process.wait()
    child.check()  # notices the death, schedules the restart
    noticed = clock.now
    while child.restart_at is not None:
        clock.now += 0.25
        child.check()
    return clock.now - noticed


def test_restart_delays_double_up_to_the_cap_and_every_death_is_logged(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(supervise.time, "monotonic", clock)
    said: list[str] = []
    child = Supervised("sidecar", CRASH, say=said.append)
    delays = [crash_and_restart(child, clock) for _ in range(8)]
    child.process.wait()
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert said[0] == "sidecar exited with code 3; restarting it in 0.5s (restart 1)"
    assert said[-1].endswith("restarting it in 30s (restart 8)")


def test_a_child_that_stayed_up_restarts_quickly_again(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(supervise.time, "monotonic", clock)
    child = Supervised("worker 1", LIVES, say=lambda line: None)
    try:
        for _ in range(3):
            child.process.kill()
            crash_and_restart(child, clock)
        child.check()  # up, but not for long yet
        assert child.delay == 4
        clock.now += supervise.STABLE_S
        child.check()  # up for STABLE_S: healthy again
        child.process.kill()
        assert crash_and_restart(child, clock) == 0.5
    finally:
        child.process.kill()
        child.process.wait()


def test_exit_reasons_name_the_signal():
    assert exit_reason(2) == "exited with code 2"
    assert exit_reason(0) == "exited with code 0"
    assert exit_reason(-99) == "was stopped by signal 99"  # no name for it
    assert exit_reason(-15) == "was stopped by SIGTERM"
    assert exit_reason(-9).startswith("was stopped by SIGKILL (killed; the kernel's out-of-")


def test_a_child_that_stays_up_is_left_alone_and_can_be_signalled(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(supervise.time, "monotonic", clock)
    said: list[str] = []
    child = Supervised("worker 1", LIVES, say=said.append)
    first = child.process
    try:
        child.check()
        clock.now += supervise.STABLE_S
        child.check()
        assert child.process is first and child.running and said == []
        child.send_signal(signal.SIGTERM)
        assert first.wait() == -signal.SIGTERM
        child.send_signal(signal.SIGTERM)  # gone: nothing to signal, no error
    finally:
        first.kill()
        first.wait()


def test_without_a_say_each_death_is_told_on_stderr(monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(supervise.time, "monotonic", clock)
    child = Supervised("sidecar", CRASH)
    child.process.wait()
    child.check()
    assert capsys.readouterr() == (
        "",
        "sidecar exited with code 3; restarting it in 0.5s (restart 1)\n",
    )


class FakeLinuxLibc:
    """prctl(2) of Linux's C library, recording its calls."""

    def __init__(self) -> None:
        self.prctl_calls: list[tuple[int, int]] = []

    def prctl(self, option: int, arg: int) -> int:
        self.prctl_calls.append((option, arg))
        return 0


def before_exec(monkeypatch, libc: object | None) -> Callable[[], None]:
    """What a Supervised child runs in its fork before exec, against `libc` (None: no glibc,
    as on macOS)."""
    started: list[dict] = []
    real_popen = subprocess.Popen

    def popen(command: list[str], **options) -> subprocess.Popen[bytes]:
        started.append(options)
        return real_popen(["true"])

    monkeypatch.setattr(supervise.subprocess, "Popen", popen)
    monkeypatch.setattr(supervise, "ctypes", ctypes_loading(libc))
    Supervised("sidecar", LIVES, say=lambda line: None).process.wait()
    [options] = started
    return options["preexec_fn"]


def test_the_child_asks_the_kernel_for_sigterm_when_its_supervisor_dies(monkeypatch):
    """PR_SET_PDEATHSIG (1, linux/prctl.h) with SIGTERM, set in the fork before exec (run here
    in-process against a fake libc; the real one is
    test_a_killed_supervisor_leaves_no_child_behind's)."""
    libc = FakeLinuxLibc()
    before_exec(monkeypatch, libc)()
    assert libc.prctl_calls == [(1, signal.SIGTERM)]


@pytest.mark.parametrize("libc", [None, object()], ids=["no-libc.so.6", "no-prctl"])
def test_without_linuxs_prctl_the_child_starts_all_the_same(monkeypatch, libc):
    before_exec(monkeypatch, libc)()  # no error: the child execs without the signal


# Runs as its own process: makes itself the subreaper of what it starts, starts a supervisor
# of a long-lived child, kills the supervisor with SIGKILL, then reaps the orphaned child.
ORPHAN_CHECK = """
import ctypes, os, signal, subprocess, sys
ctypes.CDLL("libc.so.6", use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
supervisor = subprocess.Popen(
    [sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True
)
child = int(supervisor.stdout.readline())
supervisor.kill()
supervisor.wait()
signal.signal(signal.SIGALRM, lambda *_: os.kill(child, signal.SIGKILL))
signal.alarm(5)  # still there: the check fails in seconds, not when the child's sleep ends
_, status = os.waitpid(child, 0)
print(os.waitstatus_to_exitcode(status))
"""
SUPERVISOR = f"""
import sys, time
from extproc.commands.supervise import Supervised
child = Supervised("sidecar", {LIVES!r})
print(child.process.pid, flush=True)
time.sleep(60)
"""


def test_a_killed_supervisor_leaves_no_child_behind():
    """Its child gets SIGTERM: no orphan keeps serving (and holding the ports) beside the
    supervisor that a service manager starts next."""
    done = subprocess.run(
        [sys.executable, "-c", ORPHAN_CHECK, SUPERVISOR],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == str(-signal.SIGTERM)
