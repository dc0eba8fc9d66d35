"""Requests captured from Claude Code (tests/fixtures/claude-code/), and how it writes them."""

from __future__ import annotations

import json
from typing import Any

from tests.support import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "claude-code"


def captured(name: str) -> dict[str, Any]:
    """A request captured from Claude Code: {path, headers, body}."""
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def wire_body(body: Any) -> bytes:
    """The body as Claude Code put it on the wire (compact JSON, UTF-8)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
