"""The router in a process of its own: Python exits cleanly after it classified."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def test_exit_after_classifying_is_clean(tiny_router_dir: Path) -> None:
    """CTranslate2 can abort at interpreter exit after step callbacks; close() at exit."""
    script = textwrap.dedent(
        f"""
        from extproc.decisions.router.engine import ArchRouter
        router = ArchRouter({str(tiny_router_dir)!r})
        windows = [[{{"role": "user", "content": "w" * i}}] for i in range(1, 30)]
        router.classify([("alpha", "a"), ("beta", "b"), ("code_x", "c")], windows)
        """
    )
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
