"""The `extproc` command's own small promises: --version, and route --show-prompt."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from extproc.decisions.router.engine import ArchRouter
from extproc.decisions.router.window import conversation_window, window_budget
from extproc.decisions.routing import routes_of
from tests.support.tiny_model import ROUTES


def extproc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "extproc", *args], capture_output=True, text=True, cwd=cwd
    )


def test_version_prints_the_installed_version():
    result = extproc("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"extproc {version('extproc')}"


def test_show_prompt_needs_only_the_tokenizer(tmp_path, tiny_router_dir):
    """The prompt comes from the tokenizer: a directory without model.bin is enough, and the
    text is the one the loaded model would classify."""
    tokenizer_only = tmp_path / "tokenizer-only"
    shutil.copytree(tiny_router_dir, tokenizer_only, ignore=shutil.ignore_patterns("model.bin"))
    routes = "".join(f"      - {{name: {n}, description: '{d}'}}\n" for n, d in ROUTES)
    config_text = (
        f"routing: {{model_dir: {{}}}}\nllm_providers:\n  - model: anthropic/claude-sonnet-4-5\n"
        f"    routing_preferences:\n{routes}"
    )
    text = "write a function that parses RFC 3339 dates"
    prompts = []
    for model_dir in (tokenizer_only, tiny_router_dir):
        config = tmp_path / f"{model_dir.name}.yaml"
        config.write_text(config_text.replace("{}", str(model_dir)), encoding="utf-8")
        result = extproc("route", str(config), "--text", text, "--show-prompt")
        assert result.returncode == 0, result.stderr
        prompts.append(result.stdout)
    from extproc.config import load

    config = load(tmp_path / f"{tiny_router_dir.name}.yaml")
    model = ArchRouter(tiny_router_dir)
    body = {"messages": [{"role": "user", "content": text}]}
    budget = window_budget(config.routing.window_tokens, model.device)
    window = conversation_window(body, budget, model.count_tokens)
    assert prompts == [model.prompt(routes_of(config), window)] * 2
    assert text in prompts[0]


def test_show_prompt_without_a_tokenizer_is_one_line(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        f"routing: {{model_dir: {tmp_path / 'none'}}}\nllm_providers:\n  - model: openai/x\n",
        encoding="utf-8",
    )
    result = extproc("route", str(config), "--text", "hi", "--show-prompt")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: router model directory {tmp_path / 'none'}: ")
    assert len(result.stderr.strip().splitlines()) == 1
