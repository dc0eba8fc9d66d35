"""The cooldown table: who rests after failing, for how long, and why."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from extproc.decisions.cooldown import (
    MAX_REST_S,
    Cooldowns,
    retry_after_seconds,
)

NOW = 1_796_000_000.0
"""2026-11-30 00:53:20 GMT, in seconds since the epoch: the clock every test passes in."""
GPT = "openai/gpt-5"


def test_a_retry_after_in_seconds_sets_the_rest_exactly_until_its_deadline() -> None:
    table = Cooldowns()
    table.failed(GPT, 429, "41", NOW)
    cooling = table.cooling(GPT, NOW + 1)
    assert (cooling.seconds, cooling.why) == (40, "429, retry-after 41 s")
    assert cooling.note == "cooling down 40 s after 429, retry-after 41 s"
    assert table.cooling(GPT, NOW + 40.5).seconds == 0.5
    assert not table.cooling(GPT, NOW + 41)  # over at the deadline exactly
    assert not table.cooling(GPT, NOW + 42)


def test_a_clock_stepped_back_does_not_make_a_rest_longer() -> None:
    table = Cooldowns()
    table.failed(GPT, 429, "41", NOW)
    assert table.cooling(GPT, NOW - 3600).seconds == 41


def test_the_note_rounds_the_seconds_left_up() -> None:
    table = Cooldowns()
    table.failed(GPT, 429, "41", NOW)
    assert table.cooling(GPT, NOW + 0.5).note == "cooling down 41 s after 429, retry-after 41 s"


@pytest.fixture
def machine_five_hours_behind(monkeypatch) -> Iterator[None]:
    """A local time zone other than GMT (a POSIX rule: no zone database needed)."""
    monkeypatch.setenv("TZ", "EST+05")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("machine_five_hours_behind")
def test_a_retry_after_as_an_http_date_counts_from_now() -> None:
    """HTTP-dates are GMT, whatever the machine's time zone."""
    table = Cooldowns()
    # 40 s after NOW, in the three forms RFC 9110 makes recipients read.
    for date in (
        "Mon, 30 Nov 2026 00:54:00 GMT",
        "Monday, 30-Nov-26 00:54:00 GMT",
        "Mon Nov 30 00:54:00 2026",
    ):
        table.failed(GPT, 503, date, NOW)
        assert table.cooling(GPT, NOW).seconds == 40, date
        table.succeeded(GPT)


def test_an_http_date_in_the_past_or_zero_means_no_rest() -> None:
    assert retry_after_seconds("Mon, 30 Nov 2026 00:00:00 GMT", NOW) == 0
    table = Cooldowns()
    table.failed(GPT, 429, "Mon, 30 Nov 2026 00:00:00 GMT", NOW)
    assert not table.cooling(GPT, NOW)
    table.failed("other", 429, "0", NOW)
    assert not table.cooling("other", NOW)


def test_retry_after_ms_wins_over_retry_after() -> None:
    table = Cooldowns()
    table.record(GPT, 429, {"retry-after-ms": "1500", "retry-after": "2"}, NOW)
    cooling = table.cooling(GPT, NOW)
    assert (cooling.seconds, cooling.why) == (1.5, "429, retry-after 1.5 s")


@pytest.mark.parametrize("value", ["soon", "-5", "1e3", "4 2", "", "Mon, 99 Nov 2026 00:54:00 GMT"])
def test_a_garbage_retry_after_is_ignored_and_the_backoff_applies(value: str) -> None:
    assert retry_after_seconds(value, NOW) is None
    table = Cooldowns()
    table.record(GPT, 429, {"retry-after": value, "retry-after-ms": "x"}, NOW)
    cooling = table.cooling(GPT, NOW)
    assert (cooling.seconds, cooling.why) == (1, "429")


def test_a_retry_after_is_honoured_up_to_the_longest_rest() -> None:
    table = Cooldowns()
    table.failed(GPT, 429, "18000", NOW)  # a quota back in five hours
    cooling = table.cooling(GPT, NOW)
    assert (cooling.seconds, cooling.why) == (MAX_REST_S, "429, retry-after 18000 s")
    assert MAX_REST_S == 300
    table.failed(GPT, 429, "18000", NOW, max_rest_s=60)  # listener.cooldown_max_s: 60
    assert table.cooling(GPT, NOW).seconds == 60


def test_a_longest_rest_of_0_means_providers_never_rest() -> None:
    table = Cooldowns()
    table.record(GPT, 429, {"retry-after": "30"}, NOW, max_rest_s=0)
    table.record(GPT, 503, {}, NOW, max_rest_s=0)
    assert not table.cooling(GPT, NOW)


def test_failures_in_a_row_double_the_rest_up_to_the_cap() -> None:
    table = Cooldowns()
    rests = []
    for _ in range(11):
        table.failed(GPT, 503, None, NOW)
        rests.append(table.cooling(GPT, NOW).seconds)
    assert rests == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert table.cooling(GPT, NOW).why == "503, 11 failures in a row"
    for _ in range(2000):  # a provider down for days: the doubling never overflows
        table.failed(GPT, 503, None, NOW)
    assert table.cooling(GPT, NOW).seconds == 300


def test_a_success_ends_the_streak() -> None:
    table = Cooldowns()
    for _ in range(3):
        table.failed(GPT, "refused", None, NOW)
    assert table.cooling(GPT, NOW).seconds == 4
    table.record(GPT, 200, {}, NOW + 5)
    assert not table.cooling(GPT, NOW + 5)
    table.failed(GPT, "refused", None, NOW + 6)
    cooling = table.cooling(GPT, NOW + 6)
    assert (cooling.seconds, cooling.why) == (1, "refused")


@pytest.mark.parametrize("outcome", [429, 500, 502, 503, 504, 529, "reset", "timeout"])
def test_what_counts_as_the_providers_failure(outcome: int | str) -> None:
    table = Cooldowns()
    table.record(GPT, outcome, {}, NOW)
    assert table.cooling(GPT, NOW).seconds == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 413, 422, 431])
def test_client_errors_are_about_the_request_and_end_a_streak(status: int) -> None:
    """A context-too-long 400 among them: the next request may fit."""
    table = Cooldowns()
    table.record(GPT, status, {"retry-after": "30"}, NOW)
    assert not table.cooling(GPT, NOW)
    table.failed(GPT, 503, None, NOW)
    table.failed(GPT, status, None, NOW)  # not a failure: ignored
    assert table.cooling(GPT, NOW).seconds == 1
    table.record(GPT, status, {}, NOW)  # an answer all the same
    assert not table.cooling(GPT, NOW)


def test_entries_are_kept_apart() -> None:
    table = Cooldowns()
    table.failed(GPT, 429, "10", NOW)
    assert not table.cooling("deepseek/deepseek-chat", NOW)
    table.succeeded("deepseek/deepseek-chat")
    assert table.cooling(GPT, NOW).seconds == 10


def test_memory_is_bounded_forgetting_the_least_recent_failure() -> None:
    table = Cooldowns(max_entries=2)
    table.failed("a", 429, "10", NOW)
    table.failed("b", 429, "10", NOW)
    table.failed("a", 429, "10", NOW + 1)  # a failed again: b is now the oldest
    table.failed("c", 429, "10", NOW + 2)
    assert [bool(table.cooling(name, NOW + 3)) for name in "abc"] == [True, False, True]


@pytest.mark.parametrize(
    ("milliseconds", "shown"),
    [("1234", "1.23"), ("10400", "10"), ("61500", "62"), ("250", "0.25")],
)
def test_the_note_gives_three_digits_below_ten_seconds_and_whole_seconds_above(
    milliseconds: str, shown: str
) -> None:
    table = Cooldowns()
    table.record(GPT, 429, {"retry-after-ms": milliseconds}, NOW)
    assert table.cooling(GPT, NOW).why == f"429, retry-after {shown} s"
