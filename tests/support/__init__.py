"""What the tests share: fakes of the providers, stream builders, the gateway's start and
stop, request helpers. Test files import from here and from conftest's fixtures, never from
one another (tests/unit/test_layout.py checks)."""

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
"""The project's root: config.yaml, envoy/, deploy/ and tests/fixtures/ are found from it."""


def load_yaml(text: str) -> Any:
    """`yaml.safe_load` by libyaml where PyYAML has it: its own parser takes a tenth of a
    second for a rendered Envoy bootstrap, which many tests read."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
