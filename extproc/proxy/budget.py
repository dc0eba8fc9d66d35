"""How many bytes of request bodies the sidecar takes in at once.

A body arrives whole, in one gRPC message, and the sidecar holds a few copies of it while it
routes and rewrites it; gRPC's core then keeps the memory it used at its peak. Unbounded,
24 concurrent 30 MB bodies left the sidecar at 1.3 GB (docs/reliability.md). A body that
would overdraw the budget is not read until earlier ones are done: gRPC's flow control
leaves it in Envoy, which buffers it anyway.
"""

from __future__ import annotations

import asyncio
from collections import deque


class ByteBudget:
    """A semaphore counted in bytes, first come first served. A body larger than the whole
    budget takes all of it: it waits for everything before it, but never forever."""

    def __init__(self, total: int):
        self.total = total
        self.free = total
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def take(self, size: int) -> int:
        """Wait until `size` bytes (at most the whole budget) are free; returns what it took."""
        size = min(size, self.total)
        if not self._waiting and self.free >= size:
            self.free -= size
            return size
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append((size, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give(size)  # granted as it was cancelled
            else:
                self._waiting.remove((size, waiter))
                self._wake()
            raise
        return size

    def give(self, size: int) -> None:
        self.free += size
        self._wake()

    def _wake(self) -> None:
        while self._waiting and self._waiting[0][0] <= self.free:
            size, waiter = self._waiting.popleft()
            self.free -= size
            waiter.set_result(None)
