"""Translated requests handed from the downstream exchange to its chain head's attempt.

A failover chain whose head speaks another API (providers/chains.py) leaves the client's
body in Envoy's retry buffer: a later Anthropic-format candidate needs it as it came. The
head's translation is then written on the attempt (proxy/attempt.py). Without a handoff,
Envoy sends the whole body to the sidecar a second time for it, and the attempt parses it
again: +14 ms per 4 MB request that never fails over (docs/benchmarks.md).

So the downstream exchange, which has parsed the body for its decision anyway, translates
it for the head as it would without failover, keeps the rewrite here under a random token
it puts in the request's dynamic metadata, and leaves the body alone. The head's attempt
takes the rewrite in its headers phase and replaces the body there (`CONTINUE_AND_REPLACE`):
Envoy never sends it the body.

A rewrite is only a shortcut. An attempt whose gRPC stream reaches another sidecar process
(`extproc serve --workers N`, replicas behind one address) finds nothing and reads the body
as before; so does one whose rewrite did not fit or waited too long, or was made before a
config reload (each config's runtime has its own store). Sans-I/O: the caller says what time
it is.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from typing import Generic, TypeVar

MAX_BYTES = 64 * 1024 * 1024
"""Bodies held at once, across requests: a rewrite that would pass this is not kept (its
attempt reads the body). An attempt starts within milliseconds of the decision, so only a
burst of large requests fills it."""
EXPIRY_S = 30.0
"""A rewrite not taken by then is dropped: its request went elsewhere, or its client left."""

T = TypeVar("T")


class Handoffs(Generic[T]):
    """Rewrites waiting for their attempt, by token, oldest first; bounded in bytes."""

    def __init__(self, max_bytes: int = MAX_BYTES, expiry_s: float = EXPIRY_S):
        self.max_bytes = max_bytes
        self.expiry_s = expiry_s
        self._held: OrderedDict[str, tuple[float, int, T]] = OrderedDict()
        self.bytes = 0

    def put(self, item: T, size: int, now: float) -> str | None:
        """Keep `item` (`size` bytes of body) for its attempt: the token that takes it, or
        None when it does not fit."""
        self._expire(now)
        if self.bytes + size > self.max_bytes:
            return None
        token = secrets.token_urlsafe(12)
        self._held[token] = (now + self.expiry_s, size, item)
        self.bytes += size
        return token

    def take(self, token: str, now: float) -> T | None:
        """The item kept under `token`, once; None when it is gone or never was here."""
        self._expire(now)
        held = self._held.pop(token, None)
        if held is None:
            return None
        self.bytes -= held[1]
        return held[2]

    def __len__(self) -> int:
        return len(self._held)

    def _expire(self, now: float) -> None:
        """Drop the rewrites whose time is up: all kept for the same time, so the oldest first."""
        while self._held:
            token, (until, size, _) = next(iter(self._held.items()))
            if until > now:
                return
            del self._held[token]
            self.bytes -= size
