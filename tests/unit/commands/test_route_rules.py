"""`extproc route` and `extproc check` with rules: which rule fired, or why each did not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extproc.commands.cli import main
from tests.support.captured import FIXTURES

CONFIG = """\
llm_providers:
  - model: anthropic/claude-sonnet-4-5
    default: true
    routing_preferences: [{name: code review, description: reviewing code}]
  - {model: gemini/gemini-2.5-flash, name: cheap, access_key: k}
routing: {model_dir: /nonexistent/router}
rules:
  - {name: pictures, model: cheap, when: {images: true}}
  - {name: compaction, model: gemini/gemini-2.5-flash, when: {kind: compact}, reasoning_effort: low}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def test_route_names_the_rule_that_fired_without_loading_the_model(config, capsys):
    """The model directory does not exist: a rule that holds needs no model."""
    assert main(["route", str(config), "--request", str(FIXTURES / "compact.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if not line.startswith("router_ms: ")] == [
        "route: compaction",
        "model: gemini/gemini-2.5-flash",
        "source: rule",
        "kind: compact",
        "reasoning_effort: low",
        "rule pictures: the request holds no image",
        "rule compaction: holds",
    ]


def test_route_says_why_no_rule_held(config, capsys):
    """With routes, the router decides then (its model is missing here); without, the default."""
    request = str(FIXTURES / "first-turn.json")
    assert main(["route", str(config), "--request", request, "--json"]) == 1
    assert "does not exist" in capsys.readouterr().err, "no rule held: the router is needed"
    config.write_text(
        CONFIG.replace(
            "    routing_preferences: [{name: code review, description: reviewing code}]\n", ""
        )
    )
    assert main(["route", str(config), "--request", request, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["source"], record["routed_model"], record["kind"]) == (
        "default",
        "anthropic/claude-sonnet-4-5",
        "main",
    )
    assert record["rules"] == {
        "pictures": "the request holds no image",
        "compaction": "kind is main, not compact",
    }


def test_check_lists_the_rules_before_the_routes(config, capsys):
    assert main(["check", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["rule", "pictures", "gemini/gemini-2.5-flash", "cheap"]
    assert lines[2].split() == ["rule", "compaction", "gemini/gemini-2.5-flash", "cheap"]
    assert lines[3].startswith("code review")
    assert lines[-1].endswith("OK (2 providers, 1 routes, 2 rules)")
