"""Router latency on this machine: naive Arch-Router decoding vs ours, same model, same run.

Builds once (cached under ./.cache/bench-model) a random-weight model with Arch-Router-1.5B's
exact shape, converted to int8 by our ``convert``. Random weights cost the same compute as the
real ones. The tokenizer is Arch-Router's own (Qwen2.5's, built from the ``dashscope``
package's BPE ranks by ``tests/support/qwen_tokenizer.py``), so prompts have the real length.
Windows are cut from Python's standard library source.

    python benchmarks/router_bench.py [--repeats 5] [--threads 0] [--cache DIR]
    python benchmarks/router_bench.py --device cuda --compute-type bfloat16 --repeats 20
    python benchmarks/router_bench.py --smoke --model DIR   # CI: a few seconds on a tiny model

``--model`` runs on a converted model you already have instead (the tests' tiny one in CI).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import int8_gemm

from extproc.control.router_convert import convert
from extproc.decisions.router.engine import ArchRouter
from extproc.decisions.router.prompt import FORMAT_PROMPT, TASK_INSTRUCTION
from extproc.decisions.router.window import conversation_window
from tests.support.qwen_tokenizer import build_qwen_tokenizer

CACHE = Path(os.environ.get("EXTPROC_BENCH_CACHE", ".cache/bench-model"))
WINDOW_TOKENS = (64, 128, 256, 512, 1024)
NAIVE_TOKENS = 8
SMOKE_HELP = "the fewest runs, smallest inputs: checks that it works (CI); its numbers mean nothing"
ROUTES = [
    ("code_generation", "Generating new code snippets, functions, or boilerplate from a request"),
    ("bug_fixing", "Finding the cause of an error, a failing test or a crash and fixing it"),
    ("explanation", "Explaining or reviewing existing code, APIs, concepts or design choices"),
    ("general", "General conversation, planning and questions not about a specific piece of code"),
]
ARCH_ROUTER_SHAPE = {
    "vocab_size": 151936,
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}


def corpus(limit_bytes: int = 8_000_000) -> list[str]:
    """Python's standard library source: plenty of English docstrings and code."""
    texts, size = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if "test" in path.parts or size > limit_bytes:
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        texts.append(text)
        size += len(text)
    return texts


def build_model() -> Path:
    """Random Arch-Router-shaped Qwen2 with Qwen2.5's tokenizer, int8.

    The converter pads the vocabulary to the model's 151936 rows. Built once under ``CACHE``
    (``EXTPROC_BENCH_CACHE``): keep it outside the repository.
    """
    out = CACHE / "ct2-int8"
    if (out / "model.bin").is_file():
        return out
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    src = CACHE / "hf"
    build_qwen_tokenizer(src)
    torch.manual_seed(0)
    config = Qwen2Config(**ARCH_ROUTER_SHAPE, dtype="bfloat16")
    with torch.device("cpu"):
        torch.set_default_dtype(torch.bfloat16)
        model = Qwen2ForCausalLM(config)
        torch.set_default_dtype(torch.float32)
    model.save_pretrained(str(src))
    del model
    convert(str(src), out, quantization="int8", force=True)
    return out


def window_of(router: ArchRouter, texts: list[str], tokens: int, rng: random.Random) -> list:
    """The window the sidecar cuts at ``window_tokens=tokens`` from a random corpus text.

    One user message, middle-truncated to the budget as the model reads it (escaped JSON).
    """
    text = rng.choice([t for t in texts if len(t) > tokens * 8])
    start = rng.randrange(len(text) - tokens * 8)
    body = {"messages": [{"role": "user", "content": text[start : start + tokens * 8]}]}
    return conversation_window(body, tokens, router.count_tokens)


def naive(router: ArchRouter, window: list) -> None:
    """What the model card does: whole prompt, free greedy decoding of the answer."""
    tokens = router.tokenizer.convert_ids_to_tokens(router.encode(router.prompt(ROUTES, window)))
    router.generator.generate_batch(
        [tokens],
        max_length=NAIVE_TOKENS,
        min_length=NAIVE_TOKENS,
        include_prompt_in_result=False,
    )


def timed(fn: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="CTranslate2 intra_threads")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--compute-type", default="auto", help="CTranslate2 compute type or auto")
    parser.add_argument("--batch", type=int, default=8, help="windows in the batched line")
    parser.add_argument("--naive", type=int, default=3, help="naive runs per window size")
    parser.add_argument("--windows", type=int, default=len(WINDOW_TOKENS), help="sizes to run")
    parser.add_argument("--model", type=Path, help="a converted model directory to run instead")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    if args.smoke:
        args.repeats, args.naive, args.batch, args.windows = 1, 1, 2, 1

    texts = corpus(limit_bytes=200_000 if args.smoke else 8_000_000)
    started = time.perf_counter()
    model_dir = args.model or build_model()
    print(f"model: {model_dir} (ready in {time.perf_counter() - started:.0f} s)")
    router = ArchRouter(
        model_dir, device=args.device, compute_type=args.compute_type, threads=args.threads
    )
    rng = random.Random(0)

    window = window_of(router, texts, 64, rng)
    static, rest = router.split_tokens(ROUTES, window)
    fixed = len(rest) - router.count_tokens(json.dumps(window))
    print(
        f"prompt: static prefix {len(static)} tokens; per request: window + {fixed} tokens "
        f"(format prompt {router.count_tokens(FORMAT_PROMPT)}); "
        f"task text {router.count_tokens(TASK_INSTRUCTION)}"
    )
    first = timed(router.classify, ROUTES, [window_of(router, texts, 128, rng)])
    print(f"first call after a route-config change (computes the static prefix): {first:.2f} s")

    columns = ("window", 7), ("prompt", 7), ("not cached", 10), ("naive p50", 10), ("ours p50", 9)
    header = " ".join(f"{name:>{width}}" for name, width in columns) + "  ratio"
    more = "  uncached tok/s  int8 GEMMs alone tok/s  share" if router.device == "cpu" else ""
    where = f"{os.cpu_count()} CPUs, {router.device}, {router.compute_type}"
    print(f"{header}{more}  (seconds, {where})")
    for size in WINDOW_TOKENS[: args.windows]:
        windows = [window_of(router, texts, size, rng) for _ in range(args.repeats)]
        static, rest = router.split_tokens(ROUTES, windows[0])
        # Interleaved, so that a neighbour's load falls on every column alike.
        ours, base, floor = [], [], []
        for i, window in enumerate(windows):
            ours.append(timed(router.classify, ROUTES, [window]))
            if i < args.naive:
                base.append(timed(naive, router, window))
            if router.device == "cpu":  # the GEMMs of the uncached tokens alone, same kernel
                floor.append(int8_gemm.gemm_seconds(len(rest), repeats=1))
        ours_s, base_s = statistics.median(ours), statistics.median(base)
        cells = f"{size:>7} {len(static) + len(rest):>7} {len(rest):>10}"
        line = f"{cells} {base_s:>10.4f} {ours_s:>9.4f} {base_s / ours_s:>5.1f}x"
        if floor:
            floor_s = statistics.median(floor)
            line += f" {len(rest) / ours_s:>15.0f} {len(rest) / floor_s:>23.0f}"
            line += f" {floor_s / ours_s:>5.0%}"
        print(line, flush=True)
    batches = [
        [window_of(router, texts, 128, rng) for _ in range(args.batch)]
        for _ in range(1 if args.smoke else 3)
    ]
    per_batch = statistics.median(timed(router.classify, ROUTES, b) for b in batches)
    print(f"{args.batch} concurrent fresh 128-token windows (one batch): {per_batch:.4f} s")
    print(f"python {platform.python_version()}, {platform.machine()}, argv {sys.argv[1:]}")


if __name__ == "__main__":
    main()
