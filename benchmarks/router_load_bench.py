"""What loading the router costs at a start: ours against AutoTokenizer's, same run, alternated.

Each load runs in a fresh interpreter, as the sidecar's start and `extproc eval` do, and is
timed by its CPU (user + system) and wall time. "ours" is `ArchRouter(DIR)`; the baseline
loads the same CTranslate2 model and the tokenizer through transformers' `AutoTokenizer`, as
the model card does, which imports torch wherever it is installed. The model is a one-layer
random Qwen2 over Arch-Router's tokenizer (built once under --cache), so the tokenizer's load
is the real one; the 1.5B model's weights add the same to both.

    python benchmarks/router_load_bench.py [--rounds 7] [--cache DIR] [--model DIR]
    python benchmarks/router_load_bench.py --smoke --model DIR   # CI: one round, tiny model
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.qwen_tokenizer import build_qwen_router_dir

ROOT = Path(__file__).resolve().parent.parent

LOADS = {
    "ours (ArchRouter)": (
        "from extproc.decisions.router.engine import ArchRouter\nArchRouter({dir!r})\n"
    ),
    "AutoTokenizer": (
        "import ctranslate2\nfrom transformers import AutoTokenizer\n"
        "ctranslate2.Generator({dir!r})\n"
        "AutoTokenizer.from_pretrained({dir!r}, fix_mistral_regex=False)\n"
    ),
}


def timed_load(code: str) -> tuple[float, float]:
    """CPU seconds and wall seconds of one fresh interpreter running `code`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRANSFORMERS_VERBOSITY": "error"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="loads of each kind, alternated")
    parser.add_argument("--cache", default=str(ROOT / ".cache" / "bench-qwen-router"))
    parser.add_argument("--model", help="a converted router directory to load instead")
    parser.add_argument("--smoke", action="store_true", help="one round: checks that it runs")
    args = parser.parse_args()
    model = Path(args.model) if args.model else build_qwen_router_dir(args.cache)
    rounds = 1 if args.smoke else args.rounds
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in LOADS}
    for _ in range(rounds):
        for name, code in LOADS.items():
            times[name].append(timed_load(code.format(dir=str(model))))
    torch = "installed" if importlib.util.find_spec("torch") else "not installed"
    print(f"model: {model}  rounds: {rounds}  torch: {torch}  cores: {os.cpu_count()}")
    print(f"{'load':<20} {'CPU s p50':>10} {'wall s p50':>11}")
    medians = {
        name: tuple(statistics.median(run[i] for run in runs) for i in (0, 1))
        for name, runs in times.items()
    }
    for name, (cpu, wall) in medians.items():
        print(f"{name:<20} {cpu:>10.2f} {wall:>11.2f}")
    ours, baseline = medians["ours (ArchRouter)"], medians["AutoTokenizer"]
    cpu_ratio, wall_ratio = ours[0] / baseline[0], ours[1] / baseline[1]
    print(f"ours / AutoTokenizer: CPU {cpu_ratio:.2f}, wall {wall_ratio:.2f}")


if __name__ == "__main__":
    main()
