"""What the tests share: fakes of the providers, stream builders, the gateway's start and
stop, request helpers. Test files import from here and from conftest's fixtures, never from
one another (tests/unit/test_layout.py checks)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
"""The project's root: config.yaml, envoy/, deploy/ and tests/fixtures/ are found from it."""
