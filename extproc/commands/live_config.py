"""config.yaml followed while `extproc up` runs: a valid edit reaches Envoy first, then the
sidecar; an edit that fails anywhere leaves the last good config in force and says why.

The sidecar never reads the user's file: it serves the last text that passed every check,
which `up` writes to its run folder once Envoy has taken the edit. So a sidecar that starts
again (after a crash, or the out-of-memory killer) reads a config whose clusters Envoy
already has, never a half-saved or invalid one, and the reload does not wait for it.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from extproc.commands.supervise import Supervised
from extproc.config import Config, ConfigError, parse, read_text
from extproc.control.envoy_files import DeliveryError, EnvoyFiles

NOTICE_AFTER_S = 10.0
"""When the sidecar has not confirmed an edit by then, say so (and keep waiting)."""
SETTLE_S = 0.2
"""Time for an editor to finish writing once the file's modification time changed."""

say = functools.partial(print, file=sys.stderr, flush=True)


def write_accepted(path: Path, text: str) -> None:
    """The sidecar's copy, replaced in one rename: it never reads half a file."""
    temporary = path.with_name(f".{path.name}.new")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def modified(path: str) -> int:
    """A file's modification time (0 when it is missing): what tells an edit."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def get_text(url: str) -> str | None:
    """What a local endpoint (the sidecar's health port, Envoy's admin) answers, or None."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode().strip()
    except OSError:
        return None


@dataclass
class _Pending:
    """An edit Envoy has; the sidecar has not said it loaded it yet."""

    config: Config
    since: float
    envoy_changed: bool
    signalled: int | None = None
    """The sidecar process told to reload (SIGHUP) for it."""
    noticed: bool = False


class LiveConfig:
    """The config in force, the edits on their way, and the files that carry them."""

    def __init__(
        self, config: Config, seen: int, accepted: Path, files: EnvoyFiles, sidecar: Supervised
    ):
        """`seen`: config.yaml's modification time when `config` was read from it."""
        self.config = config
        self.seen = seen
        self.accepted = accepted
        self.files = files
        self.sidecar = sidecar
        self.pending: _Pending | None = None

    def step(self) -> None:
        """One turn of `up`'s loop: take an edit, follow the sidecar, retire clusters."""
        if modified(self.config.path) != self.seen:
            time.sleep(SETTLE_S)
            self.seen = modified(self.config.path)
            self.edit()
        self.follow()
        try:
            self.files.prune(sidecar_in_step=self.pending is None)
        except DeliveryError as exc:
            say(f"Envoy keeps the clusters the config no longer needs for now: {exc}")

    def edit(self) -> None:
        """Check config.yaml as it is now; put it in force in Envoy, then for the sidecar."""
        path = self.config.path
        kept = "the last good config stays in force"
        try:
            text = read_text(path)
            new = parse(text, path)
        except ConfigError as exc:
            say(f"{path} changed but is invalid; {kept}:")
            for problem in exc.problems:
                say(f"error: {problem}")
            return
        if new.sidecar != self.config.sidecar or self.files.needs_new_process(self.config, new):
            say(
                "sidecar settings, listener.admin_port and listener.max_connections take effect "
                "on a restart of extproc up; nothing applied"
            )
            return
        refusal = self.files.refusal(new)
        if refusal:
            say(f"{path} changed but Envoy refuses it; {kept}: {refusal}")
            return
        try:
            envoy_changed = self.files.deliver(new)
        except DeliveryError as exc:
            say(f"{path} changed but {exc}; {kept}")
            return
        for warning in new.warnings:
            say(f"warning: {warning}")
        write_accepted(self.accepted, text)
        earlier = self.pending.envoy_changed if self.pending else False
        self.pending = _Pending(new, time.monotonic(), envoy_changed or earlier)
        self.config = new

    def follow(self) -> None:
        """Tell the sidecar about the pending edit once it can hear it; report when it has."""
        pending = self.pending
        if pending is None:
            return
        loaded = get_text(f"{pending.config.sidecar.health_url}/config")
        if loaded == pending.config.digest:
            envoy = "; Envoy updated in place" if pending.envoy_changed else ""
            say(f"{self.config.path} reloaded: routes and models applied{envoy}")
            self.pending = None
            return
        # Only a sidecar that answers has its SIGHUP handler; one still starting reads the
        # new file anyway, or is told once it answers with the older digest.
        process = self.sidecar.process
        if loaded is not None and self.sidecar.running and pending.signalled != process.pid:
            process.send_signal(signal.SIGHUP)
            pending.signalled = process.pid
        if not pending.noticed and time.monotonic() - pending.since > NOTICE_AFTER_S:
            say("the sidecar has not confirmed the reload yet; see its log above")
            pending.noticed = True
