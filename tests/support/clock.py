"""A clock for code that waits: `time.monotonic` and `time.sleep` of one module, where a
sleep moves the clock on at once, so tests of timeouts and retries take no time."""

from __future__ import annotations


class FakeTime:
    """Stands in for a module's `time` (monkeypatch.setattr(module, "time", FakeTime()))."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def fake_time(monkeypatch, *modules: object) -> FakeTime:
    """One FakeTime as the `time` of each of `modules`, for the test's length."""
    clock = FakeTime()
    for module in modules:
        monkeypatch.setattr(module, "time", clock)
    return clock
