"""`extproc logs`: Envoy's JSON access log as one readable line per decision.

Reads a file, stdin, or `docker compose logs -f gateway` output (whose lines carry
a `gateway-1  | ` prefix). Lines that aren't access-log JSON are skipped, never fatal.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import IO, Any

from extproc.config.prices import Price

Entry = dict[str, Any]

_COLORS = {
    "router": "32",
    "sticky": "36",
    "alias": "35",
    "rule": "35",
    "explicit": "34",
    "requested": "37",
    "default": "33",
    "fallback": "31",
    "rejected": "31",
}


def parse(line: str) -> Entry | None:
    """An access-log entry from one line, or None for anything else."""
    start = line.find("{")
    if start < 0:
        return None
    try:
        entry = json.loads(line[start:])
    except ValueError:
        return None
    return entry if isinstance(entry, dict) and "status" in entry else None


def entries(lines: Iterable[str]) -> Iterator[Entry]:
    for line in lines:
        entry = parse(line)
        if entry is not None and entry.get("source"):
            yield entry


def _paint(text: str, code: str, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color else text


def _ms(value: Any) -> str:
    try:
        return f"{float(value):.0f}ms"
    except (TypeError, ValueError):
        return "-"


def line(entry: Entry, color: bool = False) -> str:
    """`21:20:55 claude-opus-4-8 → openai/gpt-4.1 [code generation] router 412ms 200 5.3s`.

    A count_tokens request starts with `count_tokens`; a stream the client cut says so after
    its duration.
    """
    stamp = str(entry.get("time", ""))[11:19] or "--:--:--"
    source = str(entry.get("source") or "-")
    route = f" [{entry['route']}]" if entry.get("route") else ""
    status = entry.get("status")
    status_text = _paint(str(status), "31" if str(status)[:1] in "45" else "32", color)
    try:
        duration = f"{int(entry['duration_ms']) / 1000:.1f}s"
    except (KeyError, TypeError, ValueError):
        duration = "-"
    tokens = ""
    if entry.get("input_tokens") or entry.get("output_tokens"):
        tokens = f" in={entry.get('input_tokens') or 0} out={entry.get('output_tokens') or 0}"
    note = f" ({entry['note']})" if entry.get("note") else ""
    # Envoy's response flag DC: the client closed the connection before the answer ended.
    if "DC" in str(entry.get("flags") or "").split(","):
        duration += _paint(" cut by the client", "33", color)
    kind = "count_tokens " if "/count_tokens" in str(entry.get("path") or "") else ""
    decision = f"{entry.get('requested_model') or '-'} → {entry.get('routed_model') or '-'}"
    return (
        f"{stamp} {kind}{_paint(decision, '1', color)}{route} "
        f"{_paint(source, _COLORS.get(source, '0'), color)} {_ms(entry.get('router_ms'))} "
        f"{status_text} {duration}{tokens}{note}"
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(
    all_entries: Iterable[Entry], default_model: str = "", default_price: Price | None = None
) -> str:
    """Decisions per route and model, per source, router latency percentiles, and what the
    answers cost (against `default_model`, priced at `default_price`)."""
    seen = list(all_entries)
    if not seen:
        return "no decisions in the log yet"
    out = [f"{len(seen)} decisions"]
    by_route = Counter((e.get("route") or "-", e.get("routed_model") or "-") for e in seen)
    out.append("by route → model:")
    out += [f"  {n:>6}  {route} → {model}" for (route, model), n in by_route.most_common()]
    by_source = Counter(str(e.get("source")) for e in seen)
    out.append("by source: " + ", ".join(f"{s} {n}" for s, n in by_source.most_common()))
    router = [
        float(e["router_ms"]) for e in seen if e.get("source") == "router" and e.get("router_ms")
    ]
    if router:
        out.append(
            f"router latency over {len(router)} fresh decisions: "
            f"p50 {percentile(router, 0.5):.0f}ms, p90 {percentile(router, 0.9):.0f}ms, "
            f"p99 {percentile(router, 0.99):.0f}ms, mean {statistics.fmean(router):.0f}ms"
        )
    return "\n".join(out + costs(seen, default_model, default_price))


USAGE = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


def _usage(entry: Entry) -> dict[str, int]:
    """An entry's token counts (Envoy logs an unknown one as null or `-`)."""
    return {k: int(v) for k in USAGE if isinstance(v := entry.get(k), int | float)}


def _cost(entry: Entry) -> float | None:
    value = entry.get("cost_usd")
    return float(value) if isinstance(value, int | float) else None


def _cost_table(title: str, key: str, priced: list[Entry]) -> list[str]:
    """`cost by <title>:` one row per value of `key`, most expensive first."""
    totals: dict[str, list[float]] = {}
    for entry in priced:
        row = totals.setdefault(str(entry.get(key) or "-"), [0, 0.0])
        row[0] += 1
        row[1] += _cost(entry) or 0.0
    width = max(len(title), *(len(name) for name in totals))
    out = [f"cost by {title}:", f"  {title:<{width}}  requests  cost USD"]
    for name, (n, usd) in sorted(totals.items(), key=lambda item: (-item[1][1], item[0])):
        out.append(f"  {name:<{width}}  {int(n):>8}  {usd:>8.4f}")
    return out


def costs(entries: list[Entry], default_model: str, default_price: Price | None) -> list[str]:
    """Cost per route, model and session; what the same tokens would have cost on the default
    model; the share of input read from the provider's cache; what switches left uncached."""
    counted = [e for e in entries if _usage(e)]
    if not counted:
        return [
            "cost: no token counts in the log (an Envoy without the gateway's Lua filter has "
            "them only for translated answers, or with listener.log_tokens)"
        ]
    priced = [e for e in counted if _cost(e) is not None]
    tables = (("route", "route"), ("model", "routed_model"), ("session", "session"))
    out = [row for title, key in tables if priced for row in _cost_table(title, key, priced)]
    unpriced = len(counted) - len(priced)
    if unpriced:
        out.append(f"answers with tokens but no price (unknown; `price:` gives one): {unpriced}")
    spent = sum(_cost(e) or 0.0 for e in priced)
    if default_price is None:
        out.append(
            f"what routing saved: unknown, {default_model or 'the default model'} has no price"
        )
    else:
        at_default = sum(default_price.cost(_usage(e)) for e in priced)
        change = at_default - spent
        verb = "saved" if change >= 0 else "cost"
        share = f" ({abs(change) / at_default:.0%})" if at_default else ""
        more = "" if change >= 0 else " more"
        out.append(
            f"what routing saved: ${spent:.4f} spent; all on {default_model}: ${at_default:.4f}; "
            f"routing {verb} ${abs(change):.4f}{more}{share}"
        )
    totals = {k: sum(_usage(e).get(k, 0) for e in counted) for k in USAGE}
    read = totals["cache_read_input_tokens"]
    prompt = read + totals["input_tokens"] + totals["cache_creation_input_tokens"]
    if prompt:
        share = f"{read / prompt:.0%} ({read} of {prompt} tokens)"
        out.append(f"input served from the provider's cache: {share}")
    switched = [e for e in entries if e.get("switched_from")]
    uncached = sum(
        _usage(e).get("input_tokens", 0) + _usage(e).get("cache_creation_input_tokens", 0)
        for e in switched
    )
    out.append(
        f"model switches within a session: {len(switched)}, their {uncached} input tokens "
        "not read from a cache"
    )
    return out


def follow(stream: IO[str], poll_s: float = 0.25) -> Iterator[str]:
    """Lines of a file as they are appended (like `tail -f`), after those already there."""
    while True:
        text = stream.readline()
        if text:
            yield text
        else:
            time.sleep(poll_s)
