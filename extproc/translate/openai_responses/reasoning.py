"""Encrypted reasoning through Claude Code: an OpenAI `reasoning` item rides in the thinking
block's `signature` (one of ours: signatures.py), so Claude Code sends it back unchanged, and
only to the provider and model that wrote it (`origin`), as no other could decrypt it.
"""

from __future__ import annotations

import hashlib

from extproc.translate import signatures
from extproc.translate.anthropic_format import JSON


def reasoning_item(block: JSON, origin: str) -> JSON | None:
    """Our thinking block back into the `reasoning` item it came from; None for any other
    (Anthropic's signatures mean nothing to OpenAI, another provider or model can't decrypt
    this one's reasoning, and with `store: false` an item without `encrypted_content` is
    refused)."""
    state = signatures.state(block.get("signature"))
    item_id, encrypted = state.get("reasoning_id"), state.get("encrypted_content")
    if not (isinstance(item_id, str) and item_id and isinstance(encrypted, str) and encrypted):
        return None
    if state.get("origin") != _origin_tag(origin):
        return None
    thinking = block.get("thinking")
    summary = [{"type": "summary_text", "text": thinking}] if thinking else []
    return {"type": "reasoning", "id": item_id, "summary": summary, "encrypted_content": encrypted}


def reasoning_signature(item: JSON, origin: str) -> str:
    """The signature that carries a reasoning item's encrypted content through Claude Code."""
    encrypted = item.get("encrypted_content")
    item_id = item.get("id")
    if isinstance(encrypted, str) and encrypted and isinstance(item_id, str) and item_id:
        state = {"reasoning_id": item_id, "encrypted_content": encrypted}
        return signatures.sign({**state, "origin": _origin_tag(origin)})
    return ""


def _origin_tag(origin: str) -> str:
    """A short stand-in for the origin (a URL and a model name) inside every signature."""
    return hashlib.blake2b(origin.encode(), digest_size=6).hexdigest()
