"""A child process that is started again, with backoff, whenever it dies.

`extproc up` keeps its sidecar this way, and `extproc serve --workers N` each worker: a
sidecar killed by SIGKILL or by the kernel's out-of-memory killer comes back by itself while
Envoy keeps serving (requests in the gap get Envoy's 503, see docs/reliability.md). The
owner calls `check()` from its own loop; nothing here blocks or uses a thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Callable

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0
STABLE_S = 60.0
"""A child that ran this long is healthy again: its next crash restarts after FIRST_DELAY_S."""


def exit_reason(code: int) -> str:
    """A child's exit status in words: `-9` is what the out-of-memory killer leaves."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    hint = " (killed; the kernel's out-of-memory killer sends it too)" if code == -9 else ""
    return f"was stopped by {name}{hint}"


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _stop_with_parent() -> None:
    """In the child, before exec: SIGTERM when the supervisor dies, so that a killed
    supervisor leaves no orphan serving (and holding shared ports) beside its successor."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Supervised:
    """A process started from `command`, restarted after FIRST_DELAY_S, then twice as long
    after each crash that follows (at most MAX_DELAY_S), until it stays up for STABLE_S."""

    def __init__(self, name: str, command: list[str], say: Callable[[str], None] = _say):
        self.name = name
        self.command = command
        self.say = say
        self.delay = FIRST_DELAY_S
        self.restarts = 0
        self.restart_at: float | None = None
        self.process = self._start()
        self.started = time.monotonic()

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def check(self) -> None:
        """Notice a death (and log it), or start the process again once its delay is over."""
        now = time.monotonic()
        if self.running:
            if now - self.started >= STABLE_S:
                self.delay = FIRST_DELAY_S
            return
        if self.restart_at is None:
            self.restarts += 1
            reason = exit_reason(self.process.returncode)
            self.say(
                f"{self.name} {reason}; restarting it in {self.delay:g}s (restart {self.restarts})"
            )
            self.restart_at = now + self.delay
            self.delay = min(self.delay * 2, MAX_DELAY_S)
        elif now >= self.restart_at:
            self.restart_at = None
            self.process = self._start()
            self.started = now

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command, preexec_fn=_stop_with_parent)

    def send_signal(self, signum: int) -> None:
        if self.running:
            self.process.send_signal(signum)
