"""A gzip bomb: a small answer that inflates past what the gateway will inflate."""

from __future__ import annotations

import zlib


def gzip_bomb(size: int) -> bytes:
    """`size` bytes of SSE comment lines, gzipped: about 1/1000 of that on the wire. Comment
    lines of 1 KiB (not blank lines) keep the parser's per-line work, and the test, short."""
    packer = zlib.compressobj(1, wbits=31)
    lines = (b":" + b" " * 1022 + b"\n") * 1024
    return b"".join(packer.compress(lines) for _ in range(size >> 20)) + packer.flush()
