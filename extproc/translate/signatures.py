"""Provider state that must survive a round trip through Claude Code, in a thinking signature.

Some providers hand out opaque state that they want back on the next request of a tool loop
(Gemini 3's thought signatures, say). Claude Code sends back every thinking block it received,
signature included, unchanged, so that is where the state travels. Our signatures start with
`PREFIX`, which Anthropic's (base64) can never contain: a thinking block signed by us is never
sent to Anthropic, and one signed by Anthropic is never mistaken for ours.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

PREFIX = "extproc.v1."


def sign(state: dict[str, Any]) -> str:
    """A signature carrying `state` (a JSON object)."""
    return PREFIX + base64.urlsafe_b64encode(orjson.dumps(state)).decode()


def is_ours(signature: Any) -> bool:
    return isinstance(signature, str) and signature.startswith(PREFIX)


def state(signature: Any) -> dict[str, Any]:
    """What `sign` put in a signature; {} for any other signature, or one that was altered."""
    if not is_ours(signature):
        return {}
    try:
        value = orjson.loads(base64.urlsafe_b64decode(signature[len(PREFIX) :]))
    except (ValueError, orjson.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}
