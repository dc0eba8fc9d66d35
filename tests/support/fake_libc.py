"""A `ctypes` whose CDLL loads a fake C library under glibc's name: for the code that tunes
the process through libc (server.py's allocator settings, supervise.py's parent-death
signal), tested without changing the test process itself."""

from __future__ import annotations

from types import SimpleNamespace


def ctypes_loading(libc: object | None) -> SimpleNamespace:
    """CDLL loads `libc` for libc.so.6, or for None (dlopen's own process, whose symbols are
    libc's too); with `libc` None there is no glibc (musl, macOS): OSError, as ctypes says it."""

    def load(name: str | None, *args: object, **kwargs: object) -> object:
        if name not in ("libc.so.6", None) or libc is None:
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")
        return libc

    return SimpleNamespace(CDLL=load)
