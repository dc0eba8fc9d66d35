"""server.py's process tuning for `extproc serve`: glibc's allocator told to keep freed
body-sized blocks, its free pages handed back after a large body, and the garbage collector's
settings. The C library is a fake that records its calls (the memory it saves is
e2e/test_limits.py's); without glibc, each function falls back as its docstring says."""

from __future__ import annotations

import gc

import pytest

from extproc.proxy import server
from tests.support.fake_libc import ctypes_loading

# glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MiB = 1024 * 1024


class FakeGlibc:
    """The allocator functions of glibc's libc.so.6: mallopt answers 1 for a setting taken,
    0 for one refused."""

    def __init__(self, refuses: int | None = None) -> None:
        self.refuses = refuses
        self.settings: dict[int, int] = {}
        self.trims: list[int] = []

    def mallopt(self, param: int, value: int) -> int:
        if param == self.refuses:
            return 0
        self.settings[param] = value
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.trims.append(pad)
        return 1


class OtherLibc:
    """A C library under glibc's name that lacks glibc's allocator extensions."""


def use_libc(monkeypatch, libc: object | None) -> None:
    monkeypatch.setattr(server, "ctypes", ctypes_loading(libc))


def test_glibc_keeps_blocks_up_to_32_mib_and_256_mib_of_free_heap(monkeypatch):
    """Blocks up to 32 MiB (a body and its copies) come from the heap, not each from a mapping
    of its own, and up to 256 MiB of free heap stays there for the next bodies."""
    glibc = FakeGlibc()
    use_libc(monkeypatch, glibc)
    assert server.keep_freed_memory() is True
    assert glibc.settings == {M_MMAP_THRESHOLD: 32 * MiB, M_TRIM_THRESHOLD: 256 * MiB}


@pytest.mark.parametrize("refused", [M_MMAP_THRESHOLD, M_TRIM_THRESHOLD])
def test_a_setting_glibc_refuses_is_reported(monkeypatch, refused):
    use_libc(monkeypatch, FakeGlibc(refuses=refused))
    assert server.keep_freed_memory() is False


@pytest.mark.parametrize("libc", [None, OtherLibc()], ids=["no-libc.so.6", "no-mallopt"])
def test_without_glibc_nothing_is_kept_and_nothing_fails(monkeypatch, libc):
    use_libc(monkeypatch, libc)
    assert server.keep_freed_memory() is False
    server.release_freed_memory()  # no error either


def test_release_hands_all_free_heap_back(monkeypatch):
    """malloc_trim(0): every free page, none kept as padding."""
    glibc = FakeGlibc()
    use_libc(monkeypatch, glibc)
    server.release_freed_memory()
    assert glibc.trims == [0]


@pytest.fixture
def collector():
    """Restores the collector's settings that tune_for_serving changes for the process."""
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.parametrize("libc", [FakeGlibc(), None], ids=["glibc", "no-libc.so.6"])
def test_serving_freezes_what_is_loaded_and_collects_less_often(monkeypatch, collector, libc):
    use_libc(monkeypatch, libc)
    server.tune_for_serving()
    assert gc.get_freeze_count() > 0  # the modules and config loaded so far, out of the way
    assert gc.get_threshold() == (50_000, 50, 100)
    if libc is not None:
        assert libc.settings == {M_MMAP_THRESHOLD: 32 * MiB, M_TRIM_THRESHOLD: 256 * MiB}
