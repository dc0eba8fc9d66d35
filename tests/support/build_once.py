"""Where a pytest session builds a test model, and a lock so that it is built once.

Models are built per run, or once in ``EXTPROC_TINY_MODEL_CACHE`` for later runs too.
Sessions that share a folder may ask at the same time: the first builds, the others wait.
They are the workers of one run split over processes (``pytest -n``, each a session of its
own) and the mutation run's sessions, one per mutant.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def build_root(tmp_path_factory: Any, name: str, recipe: Path) -> Path:
    """The folder for the build called `name`: in the shared cache under a name that changes
    with `recipe` (the file that builds it), else in this run's base folder (its workers'
    base folders lie inside it)."""
    shared = os.environ.get("EXTPROC_TINY_MODEL_CACHE")
    if shared:
        digest = hashlib.sha256(recipe.read_bytes()).hexdigest()[:12]
        return Path(shared) / f"{name}-{digest}"
    base = tmp_path_factory.getbasetemp()
    return (base.parent if "PYTEST_XDIST_WORKER" in os.environ else base) / name


@contextmanager
def built_once(folder: Path) -> Iterator[Path]:
    """Hold `folder`'s build lock: whoever builds in it does so alone."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield folder
