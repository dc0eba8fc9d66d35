"""`extproc eval`: run the real router on labelled examples and report how it did.

A case file (YAML or JSONL) lists examples, each with the route (or rule) it should get and
one of ``text`` (one user message), ``messages`` (a conversation, Anthropic Messages style)
or ``request`` (a captured request file: a Messages body, or ``{"path", "headers", "body"}``
as tests/support/capture.py writes them; relative to the case file). Each example meets the
config's rules first, as in the sidecar; one no rule holds for goes through the same window
and classifier as a fresh decision. The report gives accuracy per route and rule, how many
cases rules decided, the confusion table, the wrong examples with the window the router saw,
and the router's decision latency.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from extproc.config.rules import Rule
from extproc.decisions.router.decoding import OTHER
from extproc.decisions.router.window import conversation_window
from extproc.decisions.rules import Facts, first_rule


class CaseError(Exception):
    """The case file is unreadable or an example is malformed; the message says where."""


class Router(Protocol):
    """What evaluation needs from a model (ArchRouter is the real one)."""

    def classify(self, routes: Sequence[tuple[str, str]], windows: list[Any]) -> list[str]: ...

    def count_tokens(self, text: str) -> int: ...


@dataclass(frozen=True)
class Case:
    """One labelled example: the Messages body it stands for (with the headers of a captured
    request) and the route or rule it should get."""

    name: str
    expected: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    case: Case
    got: str
    window: list[dict[str, str]]
    ms: float
    by_rule: bool = False
    """A rule decided (no window, no model call)."""


@dataclass
class Report:
    """Outcomes of one config on every case, and the tables derived from them."""

    config: str
    routes: list[str]
    outcomes: list[Outcome] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        """Rows and columns of the confusion table: the rules, the routes, ``other``, then
        the rest."""
        seen = [o.got for o in self.outcomes] + [o.case.expected for o in self.outcomes]
        extra = sorted(set(seen) - {*self.rules, *self.routes, OTHER})
        return [*self.rules, *self.routes, OTHER, *extra]

    def by_source(self) -> dict[str, tuple[int, int]]:
        """``rule`` and ``router`` → (correct, cases) of the decisions each made."""
        table = {}
        for source, by_rule in (("rule", True), ("router", False)):
            made = [o for o in self.outcomes if o.by_rule == by_rule]
            table[source] = (sum(o.got == o.case.expected for o in made), len(made))
        return table

    def per_route(self) -> dict[str, tuple[int, int]]:
        """Expected route → (correct, cases), for routes that have cases."""
        table: dict[str, tuple[int, int]] = {}
        for label in self.labels:
            cases = [o for o in self.outcomes if o.case.expected == label]
            if cases:
                table[label] = (sum(o.got == label for o in cases), len(cases))
        return table

    def confusion(self) -> dict[str, dict[str, int]]:
        """Expected route → route got → count."""
        table = {row: dict.fromkeys(self.labels, 0) for row in self.labels}
        for outcome in self.outcomes:
            table[outcome.case.expected][outcome.got] += 1
        return table

    @property
    def correct(self) -> int:
        return sum(o.got == o.case.expected for o in self.outcomes)

    @property
    def accuracy(self) -> float:
        return self.correct / len(self.outcomes) if self.outcomes else 0.0

    def latency_ms(self) -> dict[str, float]:
        """p50 and p90 of the decisions the model made (cases without text excluded)."""
        times = sorted(o.ms for o in self.outcomes if o.window)
        if not times:
            return {"p50": 0.0, "p90": 0.0}
        if len(times) == 1:
            return {"p50": times[0], "p90": times[0]}
        deciles = statistics.quantiles(times, n=10, method="inclusive")
        return {"p50": statistics.median(times), "p90": deciles[8]}

    def wrong(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.got != o.case.expected]

    def as_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "cases": len(self.outcomes),
            "correct": self.correct,
            "accuracy": round(self.accuracy, 4),
            "per_route": {
                route: {"correct": ok, "cases": n, "accuracy": round(ok / n, 4)}
                for route, (ok, n) in self.per_route().items()
            },
            "by_source": {
                source: {"correct": ok, "cases": n} for source, (ok, n) in self.by_source().items()
            },
            "confusion": self.confusion(),
            "latency_ms": {k: round(v, 1) for k, v in self.latency_ms().items()},
            "wrong": [
                {
                    "case": o.case.name,
                    "expected": o.case.expected,
                    "got": o.got,
                    "source": "rule" if o.by_rule else "router",
                    "window": o.window,
                }
                for o in self.wrong()
            ],
        }


def load_cases(path: str | Path) -> list[Case]:
    """Read a YAML (a list, or ``cases:`` holding one) or JSONL case file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CaseError(f"{path}: cannot read the case file ({exc.strerror})") from None
    entries: list[tuple[str, str, Any]] = []  # where, default name, entry
    if path.suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    entries.append((f"{path}:{number}", f"line {number}", json.loads(line)))
                except ValueError as exc:
                    raise CaseError(f"{path}:{number}: not JSON ({exc})") from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CaseError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
        data = data.get("cases") if isinstance(data, dict) else data
        if not isinstance(data, list):
            raise CaseError(f"{path}: expected a list of cases (or `cases:` holding one)")
        entries = [(f"{path}: case {i}", f"case {i}", e) for i, e in enumerate(data, 1)]
    if not entries:
        raise CaseError(f"{path}: no cases")
    return [_case(where, name, entry, path.parent) for where, name, entry in entries]


def _case(where: str, name: str, entry: Any, base: Path) -> Case:
    if not isinstance(entry, dict) or not isinstance(entry.get("route"), str):
        raise CaseError(f"{where}: each case needs `route` (the route it should get)")
    given = [key for key in ("text", "messages", "request") if key in entry]
    if len(given) != 1:
        raise CaseError(f"{where}: give exactly one of `text`, `messages` or `request`")
    name = str(entry.get("name") or name)
    if given == ["text"]:
        if not isinstance(entry["text"], str):
            raise CaseError(f"{where}: `text` must be a string")
        body: Any = {"messages": [{"role": "user", "content": entry["text"]}]}
    elif given == ["messages"]:
        body = {"messages": entry["messages"]}
        if not isinstance(entry["messages"], list):
            raise CaseError(f"{where}: `messages` must be a list of {{role, content}}")
    else:
        file = base / str(entry["request"])
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CaseError(f"{where}: request {file}: {exc}") from None
        captured = isinstance(data, dict) and "body" in data
        body = data["body"] if captured else data
        if not isinstance(body, dict):
            raise CaseError(f"{where}: request {file} holds no Messages body")
        headers = data.get("headers") if captured else None
        if isinstance(headers, dict):
            return Case(name, entry["route"], body, {k.lower(): str(v) for k, v in headers.items()})
    return Case(name, entry["route"], body)


def evaluate(
    router: Router,
    routes: Sequence[tuple[str, str]],
    cases: list[Case],
    window_tokens: int,
    rules: Sequence[Rule] = (),
) -> list[Outcome]:
    """Each case's decision as a new turn gets it: the first rule that holds, else the
    router on the case's window alone (a fresh decision each), timing each decision.

    A case without user text gets ``other`` without asking the model: the sidecar sends
    such a request to the requested or default model, as it does for ``other``.
    """
    outcomes = []
    for case in cases:
        started = time.perf_counter()
        size = len(json.dumps(case.body, separators=(",", ":"), ensure_ascii=False).encode())
        rule = first_rule(rules, Facts(case.body, case.headers, size))
        if rule is not None:
            ms = (time.perf_counter() - started) * 1000
            outcomes.append(Outcome(case, rule.name, [], ms, by_rule=True))
            continue
        window = conversation_window(case.body, window_tokens, router.count_tokens)
        got = router.classify(routes, [window])[0] if window else OTHER
        outcomes.append(Outcome(case, got, window, (time.perf_counter() - started) * 1000))
    return outcomes


def unknown_labels(
    cases: list[Case], routes: Sequence[tuple[str, str]], rules: Sequence[Rule] = ()
) -> list[str]:
    """Expected routes or rules that the config does not have (``other`` is always known)."""
    names = {name for name, _ in routes} | {rule.name for rule in rules} | {OTHER}
    return sorted({case.expected for case in cases} - names)


def format_report(report: Report) -> str:
    """The report as a person reads it in a terminal."""
    lines = [f"{report.config}: {len(report.outcomes)} cases"]
    per_route = report.per_route()
    width = max([len("route"), *map(len, per_route)])
    lines.append(f"  {'route':<{width}}  cases  correct  accuracy")
    for route, (ok, n) in per_route.items():
        lines.append(f"  {route:<{width}}  {n:>5}  {ok:>7}  {ok / n:>8.0%}")
    total = len(report.outcomes)
    lines.append(f"  {'all':<{width}}  {total:>5}  {report.correct:>7}  {report.accuracy:>8.0%}")
    if report.rules:
        lines.append(
            "decided by "
            + ", ".join(
                f"the {source}: {n} ({ok} correct)"
                for source, (ok, n) in report.by_source().items()
            )
        )
    lines += ["", "confusion (rows: expected route, columns: the route it got)"]
    labels = report.labels
    width = max(len(label) for label in labels) + len(str(len(labels))) + 1
    lines.append(f"  {'':<{width}}  " + " ".join(f"{i + 1:>4}" for i in range(len(labels))))
    for i, (row, counts) in enumerate(report.confusion().items()):
        cells = " ".join(f"{counts[col]:>4}" if counts[col] else "   ." for col in labels)
        lines.append(f"  {f'{i + 1} {row}':<{width}}  {cells}")
    wrong = report.wrong()
    lines += ["", f"wrong ({len(wrong)}):"]
    for outcome in wrong:
        got = f"{outcome.got} (rule)" if outcome.by_rule else outcome.got
        lines.append(f"  {outcome.case.name}: expected {outcome.case.expected}, got {got}")
        if not outcome.by_rule:
            lines.append(f"    window: {json.dumps(outcome.window, ensure_ascii=False)}")
    latency = report.latency_ms()
    lines += ["", f"decision latency: p50 {latency['p50']:.0f} ms, p90 {latency['p90']:.0f} ms"]
    return "\n".join(lines)


def format_comparison(first: Report, second: Report) -> str:
    """Two configs on the same cases: accuracy side by side and the cases that changed."""
    routes = list(dict.fromkeys([*first.per_route(), *second.per_route()]))
    width = max([len("route"), *map(len, routes)])
    a, b = first.per_route(), second.per_route()

    def cell(table: dict[str, tuple[int, int]], route: str) -> str:
        ok, n = table[route]  # both reports hold the same cases, so the same expected routes
        return f"{ok:>3}/{n:<3} {ok / n:>4.0%}"

    lines = [f"A: {first.config}", f"B: {second.config}", ""]
    lines.append(f"  {'route':<{width}}  {'A':>12}  {'B':>12}")
    for route in routes:
        lines.append(f"  {route:<{width}}  {cell(a, route)}  {cell(b, route)}")
    total = len(first.outcomes)
    lines.append(
        f"  {'all':<{width}}  {first.correct:>3}/{total:<3} {first.accuracy:>4.0%}"
        f"  {second.correct:>3}/{total:<3} {second.accuracy:>4.0%}"
    )
    changed = changes(first, second)
    lines += ["", f"changed ({len(changed)}):"]
    for change in changed:
        lines.append(
            f"  {change['case']} (expected {change['expected']}): A {change['a']}, B {change['b']}"
        )
    la, lb = first.latency_ms(), second.latency_ms()
    lines += [
        "",
        f"decision latency: A p50 {la['p50']:.0f} ms, p90 {la['p90']:.0f} ms; "
        f"B p50 {lb['p50']:.0f} ms, p90 {lb['p90']:.0f} ms",
    ]
    return "\n".join(lines)


def changes(first: Report, second: Report) -> list[dict[str, str]]:
    """The cases whose route differs between two reports on the same cases."""
    return [
        {"case": x.case.name, "expected": x.case.expected, "a": x.got, "b": y.got}
        for x, y in zip(first.outcomes, second.outcomes, strict=True)
        if x.got != y.got
    ]
