"""A documented token estimate for providers that can't count tokens for us.

Claude Code calls `/v1/messages/count_tokens` to size its context. OpenAI-style
APIs have no such endpoint, so the sidecar answers with an estimate: one token
per 4 characters of the text the model would read (system, messages, tools),
the usual rule of thumb for English and code with BPE tokenizers. It errs on
neither side by much for code, and is never used for routing.
"""

from __future__ import annotations

from typing import Any

from extproc.request_json import encode_request_json

CHARS_PER_TOKEN = 4


def estimate_input_tokens(body: dict[str, Any]) -> int:
    parts = [body.get("system"), body.get("messages"), body.get("tools")]
    size = sum(len(encode_request_json(part)) for part in parts if part)
    return max(1, size // CHARS_PER_TOKEN)


def count_tokens_estimate(body: dict[str, Any]) -> dict[str, int]:
    """The count_tokens response body."""
    return {"input_tokens": estimate_input_tokens(body)}
