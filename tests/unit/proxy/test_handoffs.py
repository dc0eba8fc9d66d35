"""The handoff store: a rewrite is taken once, within its time, and the bytes held stay
under the bound (extproc/proxy/handoffs.py)."""

from __future__ import annotations

from extproc.proxy.handoffs import Handoffs


def test_a_rewrite_is_taken_once_by_its_token_alone():
    handoffs: Handoffs[str] = Handoffs(max_bytes=100, expiry_s=30)
    token = handoffs.put("rewrite", 10, now=0)
    assert token is not None and handoffs.bytes == 10
    assert handoffs.take("another token", now=1) is None
    assert handoffs.take(token, now=1) == "rewrite"
    assert handoffs.take(token, now=1) is None
    assert handoffs.bytes == 0 and len(handoffs) == 0


def test_tokens_differ_and_are_not_guessable():
    handoffs: Handoffs[int] = Handoffs()
    tokens = {handoffs.put(i, 1, now=0) for i in range(100)}
    assert len(tokens) == 100
    assert all(token is not None and len(token) >= 16 for token in tokens)


def test_a_rewrite_not_taken_in_time_is_dropped_and_its_bytes_freed():
    handoffs: Handoffs[str] = Handoffs(max_bytes=100, expiry_s=30)
    old = handoffs.put("old", 60, now=0)
    new = handoffs.put("new", 30, now=10)
    assert old is not None and new is not None
    assert handoffs.take(old, now=30) is None  # its 30 s are up
    assert handoffs.bytes == 30
    assert handoffs.take(new, now=39.9) == "new"


def test_a_rewrite_that_would_pass_the_bound_is_not_kept():
    handoffs: Handoffs[str] = Handoffs(max_bytes=100, expiry_s=30)
    assert handoffs.put("first", 60, now=0) is not None
    assert handoffs.put("too much", 41, now=1) is None
    assert handoffs.put("fits exactly", 40, now=1) is not None
    assert handoffs.bytes == 100
    # Once the first is dropped for its time, there is room again.
    assert handoffs.put("later", 50, now=30) is not None
    assert handoffs.bytes == 90
