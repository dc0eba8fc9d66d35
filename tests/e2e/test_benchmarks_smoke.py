"""Every benchmark in benchmarks/ still runs: each one's --smoke mode (fewest runs, smallest
inputs) must exit 0 and print its table. No timing is checked; docs/benchmarks.md has those."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.support import ROOT


def smoke(script: str, *args: str) -> list[str]:
    """The lines `benchmarks/<script> --smoke` printed; fails with its output if it failed."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--smoke", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"{script} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout.splitlines()


def test_translate_bench_prints_a_row_per_stream():
    lines = smoke("translate_bench.py")
    header = lines.index(
        "stream                             upstream MB   events/s  MB/s in MB/s out"
    )
    rows = [line.split("  ")[0] for line in lines[header + 1 : header + 6]]
    assert rows == [
        "text, 1 token a chunk",
        "1 tool call, args 1 token a chunk",
        "4 parallel calls, sequential",
        "4 parallel calls, interleaved",
        "Responses: text, 1 token an event",
    ]
    assert any(line.startswith("request (Responses): first-turn.json") for line in lines)


def test_int8_gemm_prints_the_floor():
    (line,) = smoke("int8_gemm.py")
    assert line.startswith("16 tokens: ") and line.endswith(" GOPS") and "tokens/s" in line


def test_router_bench_runs_on_the_tiny_model(tiny_router_dir):
    lines = smoke("router_bench.py", "--model", str(tiny_router_dir))
    header = next(i for i, line in enumerate(lines) if line.startswith(" window  prompt"))
    assert "naive p50  ours p50  ratio" in lines[header]
    assert lines[header + 1].split()[0] == "64"
    assert lines[header + 2].startswith("2 concurrent fresh 128-token windows (one batch): ")


def test_router_load_bench_loads_the_tiny_model_both_ways(tiny_router_dir):
    lines = smoke("router_load_bench.py", "--model", str(tiny_router_dir))
    header = lines.index("load                  CPU s p50  wall s p50")
    assert [line[:20].rstrip() for line in lines[header + 1 : header + 3]] == [
        "ours (ArchRouter)",
        "AutoTokenizer",
    ]
    assert lines[header + 3].startswith("ours / AutoTokenizer: CPU ")


def test_sticky_bench_runs_on_the_tiny_model(tiny_router_dir):
    lines = smoke("sticky_bench.py", "--model", str(tiny_router_dir))
    header = lines.index("request                 body KB  fresh s  sticky ms    ratio")
    rows = [line[:22].rstrip() for line in lines[header + 1 : header + 5]]
    assert rows == ["first-turn", "tool-loop", "interactive-main", "tool-loop + pasted log"]
    assert lines[header + 5].startswith("peak resident memory: ")


def test_ttfb_bench_times_every_path():
    lines = smoke("ttfb_bench.py")
    header = lines.index(f"{'path':<38} {'p50 ms':>8} {'p99 ms':>8}")
    rows = [line[:38].rstrip() for line in lines[header + 1 : header + 6]]
    assert rows == [
        "anthropic direct",
        "anthropic via gateway",
        "anthropic via mixed gateway + tokens",
        "openai direct",
        "openai via gateway (translated)",
    ]


def test_usage_bench_prices_every_answer_it_reads():
    """Three answers (a warm-up and two) of about $0.0174 each in the session, either way;
    none without the session header."""
    lines = smoke("usage_bench.py")
    header = next(i for i, line in enumerate(lines) if line.startswith("gateway "))
    rows = [line.split() for line in lines[header + 1 :]]
    assert [(row[0], *row[-2:]) for row in rows] == [
        ("lua", "3", "0.0521"),
        ("lua-no-session", "3", "-"),
        ("sidecar", "3", "0.0521"),
    ]


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="datapath_bench needs wrk: apt-get install wrk"
)
def test_datapath_bench_measures_every_path_up_to_4_mb():
    """wrk's non-2xx count stops the run, so a complete table means every request got a 200."""
    lines = smoke("datapath_bench.py")
    assert lines[0].split() == [
        "body",
        "path",
        "p50",
        "ms",
        "p99",
        "ms",
        "req/s@16",
        "CPU",
        "µs/req@16:",
        "envoy",
        "ext_proc",
    ]
    rows = [tuple(line.split()[:3]) for line in lines[1:] if "adds" not in line]
    assert rows == [
        (size, unit, path)
        for size, unit in (("78", "KB"), ("4", "MB"))
        for path in ("direct", "noop", "echo", "ours")
    ]


def test_statusline_bench_times_each_case():
    lines = smoke("statusline_bench.py")
    header = lines.index(f"{'case':<28} {'median ms':>10} {'p90 ms':>8}  prints")
    rows = [line[:28].rstrip() for line in lines[header + 1 : header + 5]]
    assert rows == [
        "python -c pass (baseline)",
        "statusline, known session",
        "statusline, gateway down",
        "statusline --config FILE",
    ]
    assert lines[header + 2].endswith(
        "→ gpt-5.2-codex · code generation · router 412 ms · $0.84 this session"
    )
