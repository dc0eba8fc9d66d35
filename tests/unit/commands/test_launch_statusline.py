"""`extproc claude` puts the gateway's status line in Claude Code through `--settings`, unless
turned off or the user has a status line of their own (README, step 4b)."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from extproc.commands import cli, launch
from extproc.commands.launch import claude_arguments
from extproc.config import parse

CONFIG = parse("sidecar: {health_port: 50999}\nllm_providers:\n  - model: openai/gpt-4.1\n")
STATUS_LINE = {"statusLine": {"type": "command", "command": "~/.claude/mine.sh"}}


def arguments(
    tmp_path: Path, args: list[str], statusline: bool = True, **environ: str
) -> list[str]:
    environ = {"HOME": str(tmp_path / "home"), **environ}
    return claude_arguments(CONFIG, args, environ, tmp_path / "project", statusline)


def write(path: Path, settings: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings), encoding="utf-8")


def test_the_status_line_comes_through_settings_before_the_users_arguments(tmp_path):
    flag, settings, *rest = arguments(tmp_path, ["-p", "hello"])
    assert (flag, rest) == ("--settings", ["-p", "hello"])
    status_line = json.loads(settings)["statusLine"]
    assert (status_line["type"], status_line["padding"]) == ("command", 0)
    command = shlex.split(status_line["command"])
    assert command[1:] == ["-m", "extproc", "statusline", "--health", "http://127.0.0.1:50999"]
    # The command as Claude Code runs it: the gateway is not up, and it says so on one line.
    result = subprocess.run(
        status_line["command"],
        shell=True,
        input='{"session_id": "s"}',
        capture_output=True,
        text=True,
    )
    assert (result.returncode, result.stdout) == (
        0,
        "extproc: gateway not reachable at http://127.0.0.1:50999\n",
    )
    assert not (tmp_path / "home").exists(), "no settings file written"


def test_turned_off_it_leaves_the_arguments_alone(tmp_path):
    assert arguments(tmp_path, ["-c"], statusline=False) == ["-c"]


@pytest.mark.parametrize(
    "where",
    [
        "home/.claude/settings.json",
        "project/.claude/settings.json",
        "project/.claude/settings.local.json",
    ],
)
def test_a_status_line_of_the_users_own_is_kept(tmp_path, where):
    write(tmp_path / where, {"model": "opus", **STATUS_LINE})
    assert arguments(tmp_path, ["-c"]) == ["-c"]


def test_the_user_settings_folder_may_be_moved(tmp_path):
    write(tmp_path / "elsewhere" / "settings.json", STATUS_LINE)
    assert arguments(tmp_path, [], CLAUDE_CONFIG_DIR=str(tmp_path / "elsewhere")) == []


def test_settings_without_a_status_line_or_unreadable_ones_do_not_count(tmp_path):
    write(tmp_path / "home/.claude/settings.json", {"model": "opus"})
    (tmp_path / "project/.claude").mkdir(parents=True)
    (tmp_path / "project/.claude/settings.json").write_text("{not json", encoding="utf-8")
    assert arguments(tmp_path, [])[0] == "--settings"


@pytest.mark.parametrize("theirs", [["--settings", "my.json"], ["--settings=my.json"]])
def test_settings_of_the_users_own_on_the_command_line_are_left_alone(tmp_path, theirs):
    assert arguments(tmp_path, ["-p", "x", *theirs]) == ["-p", "x", *theirs]


@pytest.mark.parametrize(
    ("argv", "statusline", "args"),
    [
        (["--no-statusline", "-p", "x"], False, ["-p", "x"]),
        (["--config", "c.yaml", "--no-statusline", "--", "-c"], False, ["-c"]),
        (["--no-statusline", "--config=c.yaml", "-c"], False, ["-c"]),
        (["--config", "c.yaml", "--", "--no-statusline"], True, ["--no-statusline"]),
    ],
)
def test_the_launchers_own_flags_come_before_claudes(monkeypatch, argv, statusline, args):
    launched = {}
    monkeypatch.setattr(cli, "_load", lambda path, warn: path)
    monkeypatch.setattr(
        launch, "launch", lambda config, argv, statusline: launched.update(a=argv, s=statusline)
    )
    cli.cmd_claude(argv)
    assert (launched["s"], launched["a"]) == (statusline, args)
