"""live_config.LiveConfig: an edit of config.yaml while `extproc up` runs reaches Envoy (a fake
of its admin port over the watched files), then the sidecar (a fake of its health port and
process); an edit that fails anywhere leaves the last good config in force and says why."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import cast

import pytest

from extproc.commands import live_config
from extproc.commands.live_config import LiveConfig, get_text, modified, write_accepted
from extproc.commands.supervise import Supervised
from extproc.config import Config, parse, read_text
from extproc.control import envoy_files
from extproc.control.envoy_config import REPORT_CLUSTER, versioned_sidecar_cluster
from extproc.control.envoy_files import EnvoyFiles
from tests.support.clock import FakeTime, fake_time
from tests.support.fake_envoy_admin import FakeEnvoyAdmin
from tests.support.fake_server import FakeServer

DEEPSEEK = "  - model: deepseek/deepseek-chat\n"


@dataclass(kw_only=True)
class FakeHealth(FakeServer):
    """The sidecar's health port: `/config` answers the digest of the config it loaded."""

    digest: str | None = None
    """None: not answering yet (starting)."""

    def respond(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        status, data = (503, b"") if self.digest is None else (200, f"{self.digest}\n".encode())
        handler.send_response(status)
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


@dataclass
class FakeProcess:
    pid: int
    signals: list[int] = field(default_factory=list)

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)


@dataclass
class FakeSidecar:
    """What LiveConfig uses of `supervise.Supervised`."""

    process: FakeProcess
    running: bool = True


@dataclass
class FakeValidation:
    """`envoy --mode validate` takes seconds a run: its answer is set here instead."""

    refusing: str | None = None
    asked: list[Config] = field(default_factory=list)

    def __call__(self, config: Config) -> str | None:
        self.asked.append(config)
        return self.refusing


@dataclass
class Up:
    """`extproc up`'s side: the user's file, the sidecar's copy, Envoy, the sidecar."""

    path: Path
    accepted: Path
    admin: FakeEnvoyAdmin
    health: FakeHealth
    sidecar: FakeSidecar
    clock: FakeTime
    validation: FakeValidation = field(default_factory=FakeValidation)
    files: EnvoyFiles = field(init=False)
    live: LiveConfig = field(init=False)
    lines: list[str] = field(default_factory=list)

    def said(self) -> list[str]:
        """What `up` printed since the last call."""
        lines, self.lines[:] = self.lines[:], []
        return lines

    def text(self, extra: str = "", sidecar: str = "", listener: str = "") -> str:
        return (
            f"llm_providers:\n  - model: openai/gpt-4.1\n{extra}"
            f"listener:\n  admin_port: {self.admin.port}\n{listener}"
            f"sidecar:\n  health_port: {self.health.port}\n{sidecar}"
        )

    def save(self, text: str) -> None:
        """An edit: the file's modification time moves on."""
        stamp = os.stat(self.path).st_mtime_ns + 1_000_000_000
        self.path.write_text(text, encoding="utf-8")
        os.utime(self.path, ns=(stamp, stamp))


@pytest.fixture
def up(tmp_path, monkeypatch):
    clock = fake_time(monkeypatch, live_config, envoy_files)
    (tmp_path / "envoy").mkdir()
    admin = FakeEnvoyAdmin(folder=tmp_path / "envoy").start()
    health = FakeHealth().start()
    path = tmp_path / "config.yaml"
    setup = Up(path, tmp_path / "accepted.yaml", admin, health, FakeSidecar(FakeProcess(41)), clock)
    path.write_text(setup.text(), encoding="utf-8")
    config = parse(read_text(path), str(path))
    write_accepted(setup.accepted, setup.text())
    monkeypatch.setattr(live_config, "say", setup.lines.append)
    monkeypatch.setattr(envoy_files, "envoy_refusal", setup.validation)
    setup.files = EnvoyFiles(admin.folder, admin.port, 600, open_files=1 << 20)
    setup.files.bootstrap(config)
    admin.read_folder()  # Envoy started
    health.digest = config.digest
    sidecar = cast(Supervised, setup.sidecar)
    setup.live = LiveConfig(config, modified(str(path)), setup.accepted, setup.files, sidecar)
    yield setup
    admin.stop()
    health.stop()


def test_no_edit_no_reload(up):
    for _ in range(3):
        up.live.step()
    assert up.said() == []
    assert up.sidecar.process.signals == [] and up.live.pending is None
    assert up.clock.slept == []


def test_an_edit_reaches_envoy_then_the_sidecar_which_is_told_once(up):
    up.save(up.text(DEEPSEEK))
    up.live.step()
    new = parse(up.text(DEEPSEEK), str(up.path))
    # Envoy has it, the sidecar's copy is the new text, the sidecar is told to reload.
    assert "api_deepseek_com_443" in up.admin.cluster_names()
    assert up.accepted.read_text(encoding="utf-8") == up.text(DEEPSEEK)
    assert up.live.config.digest == new.digest
    assert up.sidecar.process.signals == [signal.SIGHUP]
    up.live.step()
    assert up.sidecar.process.signals == [signal.SIGHUP]  # once per process
    assert up.said() == []
    up.health.digest = new.digest
    up.live.step()
    assert up.said() == [f"{up.path} reloaded: routes and models applied; Envoy updated in place"]
    assert up.live.pending is None


def test_an_edit_that_changes_nothing_in_envoy_says_only_that_routes_were_applied(up):
    routes = "    routing_preferences:\n      - name: code\n        description: writing code\n"
    up.save(up.text(routes))
    up.live.step()
    up.health.digest = parse(up.text(routes), str(up.path)).digest
    up.live.step()
    assert up.said() == [f"{up.path} reloaded: routes and models applied"]


def test_two_edits_before_the_sidecar_confirms_keep_envoys_change(up):
    routes = "    routing_preferences:\n      - name: code\n        description: writing code\n"
    up.save(up.text(DEEPSEEK))
    up.live.step()
    up.save(up.text(routes + DEEPSEEK))  # Envoy's clusters are the same as the first edit's
    up.live.step()
    up.health.digest = parse(up.text(routes + DEEPSEEK), str(up.path)).digest
    up.live.step()
    assert up.said() == [f"{up.path} reloaded: routes and models applied; Envoy updated in place"]


def test_an_invalid_edit_is_reported_and_the_last_good_config_stays(up):
    before = up.live.config
    up.save("llm_providers: []\n")
    up.live.step()
    lines = up.said()
    assert lines[0] == f"{up.path} changed but is invalid; the last good config stays in force:"
    assert lines[1].startswith("error: ") and len(lines) >= 2
    assert up.live.config is before and up.live.pending is None
    assert up.accepted.read_text(encoding="utf-8") == up.text()
    up.live.step()  # reported once, not at every turn
    assert up.said() == []


def test_sidecar_and_process_settings_need_a_restart(up):
    for text in (
        up.text(sidecar="  failure_mode_allow: true\n"),
        up.text(listener="  max_connections: 100\n"),
    ):
        up.save(text)
        up.live.step()
        assert up.said() == [
            "sidecar settings, listener.admin_port and listener.max_connections take effect "
            "on a restart of extproc up; nothing applied"
        ]
    assert up.accepted.read_text(encoding="utf-8") == up.text()
    assert up.sidecar.process.signals == []


def test_an_edit_envoy_refuses_is_reported(up):
    up.validation.refusing = "error initializing configuration: bad cluster"
    up.save(up.text(DEEPSEEK))
    up.live.step()
    assert up.said() == [
        f"{up.path} changed but Envoy refuses it; the last good config stays in force: "
        "error initializing configuration: bad cluster"
    ]
    assert up.accepted.read_text(encoding="utf-8") == up.text()
    assert [c.digest for c in up.validation.asked] == [parse(up.text(DEEPSEEK), "").digest]


def test_an_edit_envoy_rejects_is_reported(up):
    up.admin.reject.add("clusters.yaml")
    up.save(up.text(DEEPSEEK))
    up.live.step()
    assert up.said() == [
        f"{up.path} changed but Envoy rejected the new clusters.yaml (its log above says why); "
        "the last good config stays in force"
    ]
    assert up.accepted.read_text(encoding="utf-8") == up.text()
    assert up.live.pending is None


def test_the_new_configs_warnings_are_shown(up):
    text = up.text("  - model: openai/gpt-4.1-mini\n    access_key: $NO_SUCH_VARIABLE_SET\n")
    up.save(text)
    up.live.step()
    warnings = parse(text, str(up.path)).warnings
    assert warnings
    assert up.said() == [f"warning: {w}" for w in warnings]


def test_a_sidecar_that_does_not_confirm_is_noticed_once_after_ten_seconds(up):
    up.save(up.text(DEEPSEEK))
    up.live.step()
    up.clock.now += live_config.NOTICE_AFTER_S
    up.live.step()
    assert up.said() == []
    up.clock.now += 0.01
    up.live.step()
    up.live.step()
    assert up.said() == ["the sidecar has not confirmed the reload yet; see its log above"]


def test_a_sidecar_that_is_starting_or_restarted_is_told_once_it_answers(up):
    up.health.digest = None  # starting: no SIGHUP handler yet
    up.save(up.text(DEEPSEEK))
    up.live.step()
    assert up.sidecar.process.signals == []
    up.health.digest = up.live.config.digest.swapcase() or "old"
    up.sidecar.running = False  # died: its successor is told
    up.live.step()
    assert up.sidecar.process.signals == []
    up.sidecar.process, up.sidecar.running = FakeProcess(42), True
    up.live.step()
    assert up.sidecar.process.signals == [signal.SIGHUP]


def test_a_retired_cluster_goes_only_once_the_sidecar_has_the_edit(up):
    up.save(up.text(DEEPSEEK))
    up.live.step()
    up.health.digest = up.live.config.digest
    up.live.step()
    up.save(up.text())  # DeepSeek's cluster is retired
    up.live.step()
    up.clock.now += 5
    up.live.step()  # the sidecar has not loaded it: a request may still go there
    assert "api_deepseek_com_443" in up.admin.cluster_names()
    up.health.digest = up.live.config.digest
    up.live.step()
    up.clock.now += 5
    up.live.step()
    sidecar = versioned_sidecar_cluster(up.live.config)
    assert up.admin.cluster_names() == [sidecar, REPORT_CLUSTER, "api_openai_com_443"]


def test_a_failed_removal_is_reported_and_envoy_keeps_the_clusters(up):
    up.save(up.text(DEEPSEEK))
    up.live.step()
    up.health.digest = up.live.config.digest
    up.live.step()
    up.save(up.text())
    up.live.step()
    up.health.digest = up.live.config.digest
    up.live.step()
    up.said()
    up.admin.reject.add("clusters.yaml")
    up.clock.now += 5
    up.live.step()
    assert up.said() == [
        "Envoy keeps the clusters the config no longer needs for now: "
        "Envoy rejected the new clusters.yaml (its log above says why)"
    ]


def test_an_edit_waits_for_the_editor_to_finish(up):
    up.save(up.text(DEEPSEEK))
    up.live.step()
    assert up.clock.slept[0] == live_config.SETTLE_S
    up.live.step()  # seen: not read again
    assert up.clock.slept.count(live_config.SETTLE_S) == 1


def test_the_sidecars_copy_is_replaced_whole(tmp_path):
    path = tmp_path / "config.yaml"
    write_accepted(path, "a: 1\n")
    write_accepted(path, "b: 2\n")
    assert path.read_text(encoding="utf-8") == "b: 2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_a_missing_file_and_a_silent_endpoint(tmp_path):
    assert modified(str(tmp_path / "missing.yaml")) == 0
    assert get_text("http://127.0.0.1:9/") is None
