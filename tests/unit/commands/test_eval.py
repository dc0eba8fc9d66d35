"""`extproc eval` end to end on the tiny real model: the mechanics (counts, tables, exit codes).

The tiny model's answers mean nothing, so nothing here judges quality: only that every case
is run through the real router and counted, tabled and reported consistently. Quality needs
the real Arch-Router (README, "Refine routes").
"""

from __future__ import annotations

import json
import locale
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from extproc.commands import evaluate
from extproc.commands.cli import main
from extproc.commands.evaluate import Case, CaseError, load_cases
from extproc.decisions.routing import routes_of
from tests.support import ROOT
from tests.support.captured import FIXTURES
from tests.support.tiny_model import ROUTES

TEXTS = {
    "code_generation": ["write a python function that reverses a string", "write code"],
    "code_review": ["review the code in parser.py", "explain what this bug is"],
    "bug_fixing": ["fix the failing test", "fix the bug please"],
}


def config(tmp_path: Path, model_dir: Path, name: str, routes: list[tuple[str, str]]) -> Path:
    preferences = "".join(f"      - {{name: {n}, description: '{d}'}}\n" for n, d in routes)
    path = tmp_path / name
    path.write_text(
        f"routing: {{model_dir: {model_dir}}}\n"
        "llm_providers:\n  - model: anthropic/claude-sonnet-4-5\n"
        f"    routing_preferences:\n{preferences}",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def files(tmp_path: Path, tiny_router_dir: Path) -> dict[str, Path]:
    cases = [{"route": r, "text": t} for r, texts in TEXTS.items() for t in texts]
    cases.append(
        {
            "name": "multi-turn",
            "route": "code_generation",
            "messages": [
                {"role": "user", "content": "our parser is slow"},
                {"role": "assistant", "content": "I can write a faster one."},
                {"role": "user", "content": "yes, do that"},
            ],
        }
    )
    captured = FIXTURES / "first-turn.json"
    cases.append({"name": "captured", "route": "code_generation", "request": str(captured)})
    cases.append({"name": "tools only", "route": "other", "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]}]})  # fmt: skip
    yaml_cases = tmp_path / "cases.yaml"
    yaml_cases.write_text(json.dumps({"cases": cases}), encoding="utf-8")  # JSON is YAML
    jsonl_cases = tmp_path / "cases.jsonl"
    jsonl_cases.write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    return {
        "cases": yaml_cases,
        "jsonl": jsonl_cases,
        "a": config(tmp_path, tiny_router_dir, "a.yaml", ROUTES),
        # Without code_review: under "a" the tiny model sends every case with user text there.
        "b": config(
            tmp_path, tiny_router_dir, "b.yaml", [r for r in ROUTES if r[0] != "code_review"]
        ),
    }


def without_model(config_path: Path) -> Path:
    """The same config with a router model directory that does not exist."""
    path = config_path.with_name("no-model.yaml")
    routes = config_path.read_text(encoding="utf-8").split("\n", 1)[1]
    path.write_text("routing: {model_dir: /nonexistent/model}\n" + routes, encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["eval", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def check_report(report: dict[str, Any], cases: int) -> None:
    """Every count in a report adds up to the cases that were run."""
    assert report["cases"] == cases
    assert sum(r["cases"] for r in report["per_route"].values()) == cases
    assert report["correct"] == sum(r["correct"] for r in report["per_route"].values())
    confusion = report["confusion"]
    assert sum(sum(row.values()) for row in confusion.values()) == cases
    assert sum(confusion[label][label] for label in confusion) == report["correct"]
    for route, row in report["per_route"].items():
        assert sum(confusion[route].values()) == row["cases"]
    assert len(report["wrong"]) == cases - report["correct"]
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p90"]


def test_json_report_adds_up(capsys: pytest.CaptureFixture[str], files: dict[str, Path]) -> None:
    code, out, _ = run(capsys, str(files["a"]), str(files["cases"]), "--json")
    assert code == 0
    [report] = json.loads(out)["reports"]
    check_report(report, 9)
    assert report["per_route"]["code_generation"]["cases"] == 4
    # The case without user text is never sent to the model: it gets other.
    assert report["per_route"]["other"] == {"correct": 1, "cases": 1, "accuracy": 1.0}
    assert list(report["confusion"]) == [name for name, _ in ROUTES] + ["other"]


def test_wrong_examples_carry_the_window_the_router_saw(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path]
) -> None:
    mislabelled = files["cases"].with_name("wrong.yaml")
    cases = [{"name": "x", "route": label, "text": "write a python function"} for label in ("code_review", "bug_fixing")]  # fmt: skip
    mislabelled.write_text(json.dumps(cases), encoding="utf-8")
    code, out, _ = run(capsys, str(files["a"]), str(mislabelled), "--json")
    [report] = json.loads(out)["reports"]
    assert code == 0 and len(report["wrong"]) >= 1  # one text cannot be both routes
    for wrong in report["wrong"]:
        assert wrong["window"] == [{"role": "user", "content": "write a python function"}]
        assert wrong["got"] != wrong["expected"]


def test_text_report(capsys: pytest.CaptureFixture[str], files: dict[str, Path]) -> None:
    code, out, _ = run(capsys, str(files["a"]), str(files["jsonl"]))
    assert code == 0
    assert f"{files['a']}: 9 cases" in out
    assert "confusion (rows: expected route, columns: the route it got)" in out
    assert "decision latency: p50 " in out and " ms, p90 " in out
    lines = out.splitlines()
    table = lines[lines.index("confusion (rows: expected route, columns: the route it got)") + 2 :]
    rows = table[: table.index("")]
    assert [row.split()[1] for row in rows[: len(ROUTES) + 1]] == [n for n, _ in ROUTES] + ["other"]
    wrong = int(out.split("wrong (")[1].split(")")[0])
    assert out.count("\n    window: ") == wrong


TOOLS_ONLY = {"name": "tools only", "route": "other", "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]}]}  # fmt: skip


def case_file(files: dict[str, Path], name: str, cases: list[dict[str, Any]]) -> str:
    path = files["cases"].with_name(name)
    path.write_text(json.dumps(cases), encoding="utf-8")
    return str(path)


def test_accuracy_confusion_and_wrong_windows_exactly(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path]
) -> None:
    """The tiny model answers code_review for each of these texts: one right, two wrong."""
    cases = case_file(
        files,
        "thirds.yaml",
        [
            {"route": "other", "text": "write code"},
            {"route": "other", "text": "fix the bug 日本"},
            TOOLS_ONLY,
            {"route": "code_review", "text": "review the code in parser.py"},
        ],
    )
    code, out, _ = run(capsys, str(files["a"]), cases, "--json")
    [report] = json.loads(out)["reports"]
    assert code == 0
    assert (report["correct"], report["accuracy"]) == (2, 0.5)
    assert report["per_route"] == {
        "code_review": {"correct": 1, "cases": 1, "accuracy": 1.0},
        "other": {"correct": 1, "cases": 3, "accuracy": 0.3333},
    }
    assert [(w["case"], w["got"], w["window"]) for w in report["wrong"]] == [
        ("case 1", "code_review", [{"role": "user", "content": "write code"}]),
        ("case 2", "code_review", [{"role": "user", "content": "fix the bug 日本"}]),
    ]
    code, out, _ = run(capsys, str(files["a"]), cases)
    assert code == 0
    table, confusion, wrong, _ = out.split("\n\n")
    assert table.splitlines() == [
        f"{files['a']}: 4 cases",
        "  route        cases  correct  accuracy",
        "  code_review      1        1      100%",
        "  other            3        1       33%",
        "  all              4        2       50%",
    ]
    assert confusion.splitlines() == [
        "confusion (rows: expected route, columns: the route it got)",
        "                        1    2    3    4    5",
        "  1 code_generation     .    .    .    .    .",
        "  2 code_review         .    1    .    .    .",
        "  3 bug_fixing          .    .    .    .    .",
        "  4 general_chat        .    .    .    .    .",
        "  5 other               .    2    .    .    1",
    ]
    assert wrong.splitlines() == [
        "wrong (2):",
        "  case 1: expected other, got code_review",
        '    window: [{"role": "user", "content": "write code"}]',
        "  case 2: expected other, got code_review",
        '    window: [{"role": "user", "content": "fix the bug 日本"}]',
    ]


def test_latency_with_no_decision_and_with_one(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path]
) -> None:
    """A case without user text is no decision; one decision is its own p50 and p90."""
    code, out, _ = run(capsys, str(files["a"]), case_file(files, "none.yaml", [TOOLS_ONLY]), "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["reports"][0]["latency_ms"] == {"p50": 0.0, "p90": 0.0}
    one = case_file(files, "one.yaml", [{"route": "code_review", "text": "write code"}])
    code, out, _ = run(capsys, str(files["a"]), one, "--json")
    latency = json.loads(out)["reports"][0]["latency_ms"]
    assert code == 0 and list(latency) == ["p50", "p90"] and latency["p50"] == latency["p90"] > 0


def test_compare_two_configs(capsys: pytest.CaptureFixture[str], files: dict[str, Path]) -> None:
    """Config "b" has no code_review route: every case "a" sends there goes elsewhere under
    "b", and the comparison lists each case whose route changed, with both routes."""
    compared = files["cases"].with_name("compared.yaml")
    kept = [
        c for c in json.loads(files["cases"].read_text())["cases"] if c["route"] != "code_review"
    ]
    compared.write_text(json.dumps(kept), encoding="utf-8")
    a, b = str(files["a"]), str(files["b"])
    code, out, _ = run(capsys, a, str(compared), "--compare", b, "--json")
    assert code == 0
    record = json.loads(out)
    first, second = record["reports"]
    check_report(first, 7)
    check_report(second, 7)
    assert [first["config"], second["config"]] == [a, b]
    # Under "a" the tiny model answers code_review for every case with user text.
    moved = [("case 1", "code_generation"), ("case 2", "code_generation"), ("case 3", "bug_fixing"), ("case 4", "bug_fixing"), ("multi-turn", "code_generation"), ("captured", "code_generation")]  # fmt: skip
    assert record["changed"] == [
        {"case": case, "expected": expected, "a": "code_review", "b": "code_generation"}
        for case, expected in moved
    ]
    code, out, _ = run(capsys, a, str(compared), "--compare", b)
    assert code == 0
    header, table, changed, _ = out.split("\n\n")
    assert header == f"A: {a}\nB: {b}"
    assert table.splitlines() == [
        "  route                       A             B",
        "  code_generation    0/4     0%    4/4   100%",
        "  bug_fixing         0/2     0%    0/2     0%",
        "  other              1/1   100%    1/1   100%",
        "  all                1/7    14%    5/7    71%",
    ]
    assert changed.splitlines() == [
        "changed (6):",
        *(f"  {case} (expected {expected}): A code_review, B code_generation" for case, expected in moved),
    ]  # fmt: skip


def test_exit_codes(capsys: pytest.CaptureFixture[str], files: dict[str, Path]) -> None:
    code, _, err = run(capsys, str(files["a"]), str(files["cases"]), "--min-accuracy", "1.01")
    assert code == 1 and "is below --min-accuracy" in err
    assert run(capsys, str(files["a"]), str(files["cases"]), "--min-accuracy", "0")[0] == 0
    unknown = files["cases"].with_name("unknown.yaml")
    unknown.write_text("- {route: poetry, text: write a poem}\n", encoding="utf-8")
    code, _, err = run(capsys, str(files["a"]), str(unknown))
    assert code == 2 and "cases expect routes that" in err and "poetry" in err
    broken = files["cases"].with_name("broken.yaml")
    broken.write_text("- {route: code_review}\n", encoding="utf-8")
    code, _, err = run(capsys, str(files["a"]), str(broken))
    assert code == 2 and "case 1: give exactly one of `text`, `messages` or `request`" in err
    code, _, err = run(capsys, str(without_model(files["a"])), str(files["cases"]))
    assert code == 1 and "does not exist" in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot read the case file (No such file or directory)"),
        ("- [\n", "not YAML (while parsing a flow node)"),
        ("route: x\n", "expected a list of cases (or `cases:` holding one)"),
        ("- {route: x, messages: hi}\n", "case 1: `messages` must be a list of {role, content}"),
        ("- {text: hi}\n", "case 1: each case needs `route` (the route it should get)"),
        ("- [route, x]\n", "case 1: each case needs `route` (the route it should get)"),
        ("- {route: x, text: 3}\n", "case 1: `text` must be a string"),
        ("[]\n", "no cases"),
        ("cases: []\n", "no cases"),
    ],
)
def test_a_broken_case_file_is_named_with_what_is_wrong(
    tmp_path: Path, text: str | None, message: str
) -> None:
    path = tmp_path / "cases.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(CaseError) as raised:
        load_cases(path)
    assert str(raised.value) == f"{path}: {message}"


def test_a_jsonl_line_that_is_not_json_is_named_by_its_number(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text('{"route": "a", "text": "hi"}\n\n{"route": "a", text}\n', encoding="utf-8")
    with pytest.raises(CaseError) as raised:
        load_cases(path)
    reason = "Expecting property name enclosed in double quotes: line 1 column 16 (char 15)"
    assert str(raised.value) == f"{path}:3: not JSON ({reason})"


def test_a_request_file_without_a_messages_body_is_named(tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    path = tmp_path / "cases.yaml"
    path.write_text("- {route: a, request: list.json}\n", encoding="utf-8")
    with pytest.raises(CaseError) as raised:
        load_cases(path)
    assert str(raised.value) == f"{path}: case 1: request {tmp_path / 'list.json'} holds no Messages body"  # fmt: skip


def test_a_request_file_missing_or_not_json_is_named_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "cut.json").write_text('{"messages": [', encoding="utf-8")
    path = tmp_path / "cases.yaml"
    for request, reason in (
        ("gone.json", f"[Errno 2] No such file or directory: '{tmp_path / 'gone.json'}'"),
        ("cut.json", "Expecting value: line 1 column 15 (char 14)"),
    ):
        path.write_text(f"- {{route: a, request: {request}}}\n", encoding="utf-8")
        with pytest.raises(CaseError) as raised:
            load_cases(path)
        assert str(raised.value) == f"{path}: case 1: request {tmp_path / request}: {reason}"


def test_case_and_request_files_are_read_as_utf8_whatever_the_locale(tmp_path: Path) -> None:
    """Under the C locale Python's default encoding is ASCII: the files are UTF-8 all the same."""
    body = {"messages": [{"role": "user", "content": "fix it 日本"}]}
    (tmp_path / "bare.json").write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    path = tmp_path / "cases.yaml"
    path.write_text("- {route: a, request: bare.json, name: 日本}\n", encoding="utf-8")
    before = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        cases = load_cases(path)
    finally:
        locale.setlocale(locale.LC_CTYPE, before)
    assert cases == [Case("日本", "a", body)]


def test_cases_are_named_by_their_place_unless_named(tmp_path: Path) -> None:
    body = {"messages": [{"role": "user", "content": "fix it"}]}
    (tmp_path / "wrapped.json").write_text(json.dumps({"body": body}), encoding="utf-8")
    (tmp_path / "bare.json").write_text(json.dumps(body), encoding="utf-8")
    entries = [
        {"route": "a", "text": "fix it"},
        {"route": "a", "request": "wrapped.json", "name": "captured"},
        {"route": "a", "request": "bare.json"},
    ]
    (tmp_path / "cases.yaml").write_text(json.dumps(entries), encoding="utf-8")
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    for path, names in (("cases.yaml", ["case 1", "captured", "case 3"]), ("cases.jsonl", ["line 1", "captured", "line 3"])):  # fmt: skip
        assert load_cases(tmp_path / path) == [Case(name, "a", body) for name in names]


class CodeReview:
    """A router that answers code_review, for timing with a fake clock."""

    def classify(self, routes: Any, windows: list[Any]) -> list[str]:
        return ["code_review"]

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def test_each_decision_is_timed_in_milliseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a clock that moves a quarter second per reading."""
    ticks = iter(range(100))
    monkeypatch.setattr(evaluate.time, "perf_counter", lambda: next(ticks) * 0.25)
    cases = [Case("a", "code_review", {"messages": [{"role": "user", "content": "fix it"}]})]
    [outcome] = evaluate.evaluate(CodeReview(), ROUTES, cases, 1000)
    assert (outcome.got, outcome.ms) == ("code_review", 250.0)


def test_latency_percentiles_of_three_decisions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decisions of 125, 187.5 and 250 ms: p50 187.5 ms, p90 237.5 ms (interpolated), to a
    tenth of a millisecond in JSON."""
    ticks = iter([0.0, 0.125, 1.0, 1.1875, 2.0, 2.25])
    monkeypatch.setattr(evaluate.time, "perf_counter", lambda: next(ticks))
    body = {"messages": [{"role": "user", "content": "fix it"}]}
    cases = [Case(name, "code_review", body) for name in "abc"]
    outcomes = evaluate.evaluate(CodeReview(), ROUTES, cases, 1000)
    report = evaluate.Report("c.yaml", [n for n, _ in ROUTES], outcomes)
    assert report.as_json()["latency_ms"] == {"p50": 187.5, "p90": 237.5}
    assert evaluate.format_report(report).endswith("decision latency: p50 188 ms, p90 238 ms")


def test_accuracy_in_json_to_four_places() -> None:
    """Two of three right, overall as per route: 0.6667."""
    body = {"messages": [{"role": "user", "content": "fix it"}]}
    cases = [Case(name, route, body) for name, route in (("a", "code_review"), ("b", "code_review"), ("c", "other"))]  # fmt: skip
    outcomes = evaluate.evaluate(CodeReview(), ROUTES, cases, 1000)
    record = evaluate.Report("c.yaml", [n for n, _ in ROUTES], outcomes).as_json()
    assert (record["correct"], record["accuracy"]) == (2, 0.6667)
    assert record["per_route"] == {
        "code_review": {"correct": 2, "cases": 2, "accuracy": 1.0},
        "other": {"correct": 0, "cases": 1, "accuracy": 0.0},
    }


def test_the_window_is_measured_with_the_routers_tokenizer() -> None:
    """CodeReview counts words: the three messages' JSON is 16 of them, and all fit 16
    tokens (four characters a token would hold only the latest)."""
    messages = [
        {"role": "user", "content": "one two"},
        {"role": "assistant", "content": "three four five"},
        {"role": "user", "content": "six seven"},
    ]
    cases = [Case("a", "code_review", {"messages": messages})]
    [outcome] = evaluate.evaluate(CodeReview(), ROUTES, cases, 16)
    assert outcome.window == messages


def test_shipped_example_cases_cover_the_four_routes() -> None:
    """examples/route-cases.yaml: at least 15 cases per route, multi-turn ones included."""
    from extproc.config import load

    cases = load_cases(ROOT / "examples" / "route-cases.yaml")
    routes = [name for name, _ in routes_of(load(str(ROOT / "examples" / "routes.yaml")))]
    assert routes == ["code generation", "code understanding", "architecture and design", "debugging"]  # fmt: skip
    counts = Counter(case.expected for case in cases)
    assert all(counts[route] >= 15 for route in routes), counts
    assert set(counts) <= {*routes, "other"}
    for route in routes:
        turns = [len(c.body["messages"]) for c in cases if c.expected == route]
        assert max(turns) >= 3, f"{route}: no multi-turn case"
    assert len({case.name for case in cases}) == len(cases)


def test_route_command_loads_the_same_router(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path]
) -> None:
    """`extproc route` shares the router loading and the window budget with `extproc eval`."""
    text = "write a python function 日本"
    assert main(["route", str(files["a"]), "--text", text, "--show-prompt"]) == 0
    prompt = capsys.readouterr().out
    assert json.dumps([{"role": "user", "content": text}]) in prompt
    assert main(["route", str(files["a"]), "--text", text, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["source"] == "router" and record["route"] in {n for n, _ in ROUTES}
    assert main(["route", str(without_model(files["a"])), "--text", text]) == 1
    assert "does not exist" in capsys.readouterr().err
