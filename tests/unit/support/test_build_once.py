"""Where the test models are built: once for a run, whether it is one process or several."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.build_once import build_root


class Factory:
    """The part of pytest's `tmp_path_factory` that `build_root` reads."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def getbasetemp(self) -> Path:
        return self.base


def test_one_process_builds_in_its_own_base_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("EXTPROC_TINY_MODEL_CACHE", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    assert build_root(Factory(tmp_path), "tiny-router", Path(__file__)) == tmp_path / "tiny-router"


@pytest.mark.parametrize("worker", ["gw0", "gw1"])
def test_every_worker_of_a_run_builds_in_the_runs_base_folder(tmp_path, monkeypatch, worker):
    monkeypatch.delenv("EXTPROC_TINY_MODEL_CACHE", raising=False)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    factory = Factory(tmp_path / f"popen-{worker}")
    assert build_root(factory, "tiny-router", Path(__file__)) == tmp_path / "tiny-router"


def test_a_shared_cache_holds_each_recipe_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("EXTPROC_TINY_MODEL_CACHE", str(tmp_path / "cache"))
    recipe = tmp_path / "recipe.py"
    recipe.write_text("one", encoding="utf-8")
    first = build_root(Factory(tmp_path), "tiny-router", recipe)
    recipe.write_text("two", encoding="utf-8")
    second = build_root(Factory(tmp_path), "tiny-router", recipe)
    assert first.parent == second.parent == tmp_path / "cache"
    assert first.name.startswith("tiny-router-") and first != second
