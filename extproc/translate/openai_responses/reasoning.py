"""Encrypted reasoning through Claude Code: an OpenAI `reasoning` item rides in the thinking
block's `signature` (one of ours: signatures.py), so Claude Code sends it back unchanged, and
only to the provider entry and account that wrote it (`origin`): no other server or model
could decrypt it, and another account's key must never carry it.
"""

from __future__ import annotations

import hashlib

from extproc.translate import signatures
from extproc.translate.anthropic_format import JSON


def reasoning_origin(entry: str, base_url: str, model: str, access_key: str | None) -> str:
    """The `origin` a provider entry's reasoning is signed for: the entry (its name, base URL
    and model) and the account its key belongs to. Two entries for one model with different
    keys are two origins, so reasoning from team A's answer never goes out with team B's key;
    a changed key drops the reasoning signed before it. The key only keys the digest: the
    signature, which the client holds, tells nothing about it."""
    account = hashlib.sha256((access_key or "").encode()).digest()
    where = "\0".join((entry, base_url, model)).encode()
    return hashlib.blake2b(where, key=account, digest_size=16).hexdigest()


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
    """A short stand-in for the origin (`reasoning_origin`) inside every signature."""
    return hashlib.blake2b(origin.encode(), digest_size=6).hexdigest()
