"""`extproc eval` with rules: captured requests are scored like texts, rules decide before the
router as in the sidecar, and the report tells rule decisions from router decisions."""

from __future__ import annotations

import json
from pathlib import Path

from extproc.commands import evaluate
from extproc.commands.cli import main
from extproc.config import Config, parse
from tests.support.captured import FIXTURES
from tests.support.stub_router import FirstRoute
from tests.support.tiny_model import ROUTES

RULES = """\
rules:
  - {name: compaction, model: anthropic/claude-haiku-4-5, when: {kind: compact}}
  - {name: subagents, model: anthropic/claude-haiku-4-5, when: {kind: subagent}}
"""


def case_file(tmp_path: Path) -> Path:
    cases = [
        {"name": "compact", "route": "compaction", "request": str(FIXTURES / "compact.json")},
        {"name": "agent", "route": "subagents", "request": str(FIXTURES / "subagent.json")},
        {
            "name": "agent as a route",
            "route": "code_review",
            "request": str(FIXTURES / "subagent.json"),
        },
        {"name": "turn", "route": "code_generation", "request": str(FIXTURES / "first-turn.json")},
        {"name": "typed", "route": "subagents", "text": "write a function"},
    ]
    path = tmp_path / "cases.yaml"
    path.write_text(json.dumps(cases), encoding="utf-8")
    return path


def config_with(rules: str) -> Config:
    """The tiny model's routes on Sonnet, and `rules` for Haiku."""
    return parse(
        "llm_providers:\n  - model: anthropic/claude-sonnet-4-5\n    routing_preferences:\n"
        + "".join(f"      - {{name: {n}, description: '{d}'}}\n" for n, d in ROUTES)
        + "  - model: anthropic/claude-haiku-4-5\n"
        + rules
    )


def test_rules_decide_first_and_the_report_separates_them(tmp_path):
    config = config_with(RULES)
    cases = evaluate.load_cases(case_file(tmp_path))
    assert cases[0].headers["x-claude-code-session-id"]  # a captured request's own headers
    router = FirstRoute()
    routes = [(r.name, r.description) for r, _ in config.routes]
    outcomes = evaluate.evaluate(router, routes, cases, 256, config.rules)
    assert [(o.got, o.by_rule) for o in outcomes] == [
        ("compaction", True),
        ("subagents", True),
        ("subagents", True),
        ("code_generation", False),
        ("code_generation", False),
    ]
    assert router.windows == 2, "a rule's decision costs no model call"
    report = evaluate.Report(
        "c.yaml", [n for n, _ in routes], outcomes, ["compaction", "subagents"]
    )
    record = report.as_json()
    assert record["by_source"] == {
        "rule": {"correct": 2, "cases": 3},
        "router": {"correct": 1, "cases": 2},
    }
    assert report.labels[:3] == ["compaction", "subagents", "code_generation"]
    assert [(w["case"], w["source"], w["window"]) for w in record["wrong"]] == [
        ("agent as a route", "rule", []),  # a rule reads no window
        ("typed", "router", [{"role": "user", "content": "write a function"}]),
    ]
    text = evaluate.format_report(report)
    assert "decided by the rule: 3 (2 correct), the router: 2 (1 correct)" in text
    assert "  agent as a route: expected code_review, got subagents (rule)\n  typed:" in text


def test_a_captured_requests_headers_meet_the_rules(tmp_path):
    """A header rule holds for a captured request that sent the header, as in the sidecar."""
    config = config_with(
        "rules:\n  - {name: cli, model: anthropic/claude-haiku-4-5, when: {header: {x-app: cli}}}\n"
    )
    path = tmp_path / "cases.yaml"
    captured = str(FIXTURES / "first-turn.json")  # sent with `x-app: cli`
    path.write_text(json.dumps([{"route": "cli", "request": captured}, {"route": "cli", "text": "hi"}]))  # fmt: skip
    routes = [(r.name, r.description) for r, _ in config.routes]
    outcomes = evaluate.evaluate(FirstRoute(), routes, evaluate.load_cases(path), 256, config.rules)
    assert [(o.got, o.by_rule) for o in outcomes] == [("cli", True), ("code_generation", False)]


def test_a_token_rule_reads_the_cases_size_in_utf8_bytes():
    """As in the sidecar, the input-token estimate starts from the body's bytes (here compact
    UTF-8 JSON, 43 bytes around the text) at three bytes a token: 300 bytes hold 100."""
    config = config_with(
        "rules:\n  - {name: long, model: anthropic/claude-haiku-4-5, when: {min_input_tokens: 100}}\n"
    )
    cases = [
        evaluate.Case(name, "long", {"messages": [{"role": "user", "content": "日本" + "x" * n}]})
        for name, n in (("300 bytes", 251), ("299 bytes", 250))
    ]
    routes = [(r.name, r.description) for r, _ in config.routes]
    outcomes = evaluate.evaluate(FirstRoute(), routes, cases, 256, config.rules)
    assert [(o.got, o.by_rule) for o in outcomes] == [("long", True), ("code_generation", False)]


def test_the_command_accepts_rule_names_as_expected_labels(tmp_path, tiny_router_dir, capsys):
    routes = "".join(f"      - {{name: {n}, description: '{d}'}}\n" for n, d in ROUTES)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"routing: {{model_dir: {tiny_router_dir}}}\n"
        f"llm_providers:\n  - model: anthropic/claude-sonnet-4-5\n    routing_preferences:\n{routes}"
        "  - model: anthropic/claude-haiku-4-5\n" + RULES,
        encoding="utf-8",
    )
    assert main(["eval", str(config), str(case_file(tmp_path)), "--json"]) == 0
    [report] = json.loads(capsys.readouterr().out)["reports"]
    assert report["by_source"]["rule"] == {"correct": 2, "cases": 3}
    config.write_text(config.read_text().replace(RULES, ""), encoding="utf-8")
    assert main(["eval", str(config), str(case_file(tmp_path))]) == 2
    assert "does not have: compaction, subagents" in capsys.readouterr().err
