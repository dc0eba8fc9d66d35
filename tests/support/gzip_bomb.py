"""A gzip bomb: a small answer that inflates past what the gateway will inflate."""

from __future__ import annotations

import zlib

EVENT = b"data: " + b"x" * ((1 << 20) - 8) + b"\n\n"
"""One SSE event of 1 MiB whose data is not JSON: a translator reads and skips it, so only the
inflate limit stops a stream of them (blank or comment lines would pass the SSE parser's
own limit first)."""


def gzip_bomb(size: int) -> bytes:
    """`size` bytes of 1 MiB events, gzipped: about 1/230 of that on the wire."""
    packer = zlib.compressobj(1, wbits=31)
    return b"".join(packer.compress(EVENT) for _ in range(size >> 20)) + packer.flush()
