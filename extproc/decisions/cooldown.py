"""Which providers are cooling down after failing, so that requests skip them for a while.

A provider that keeps failing would otherwise cost every request routed to it a failed
attempt first. This table remembers, per provider entry (its `name`), until when it rests:

- A failure that says when to come back sets that time exactly: `retry-after-ms` (not a
  standard header: OpenAI and Anthropic send it, and their SDKs read it before the other),
  else `retry-after`, in delta-seconds or as an HTTP-date (RFC 9110 §10.2.3). A date in the
  past or `0` means no rest at all.
- One that doesn't say: `BACKOFF_START_S`, doubled (`BACKOFF_FACTOR`) with each failure in a
  row.
- No rest is longer than `max_rest_s` (`listener.cooldown_max_s`, `MAX_REST_S` by default; 0:
  providers never rest).
- Any answer that is not a failure ends the streak and the rest: the provider answers.

Failures are the provider's own trouble: 429, every 5xx (Anthropic's overloaded 529 too), and
a request that got no answer at all, named by a reason (refused, reset, timeout). Other 4xx
are about the request (a prompt too long for the window, a bad key, a bad field): sending the
next request elsewhere would not help it, so they are answers like any other.

Sans-I/O: callers say what happened and when (`now`: seconds since the epoch, the clock an
HTTP-date is on; a clock stepped back never makes a rest longer than it was set); nothing
here reads a clock or a socket. The table is per sidecar process:
`extproc serve --workers N` runs N tables that each learn on their own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

from extproc.config.settings import Listener

MAX_REST_S = float(Listener.cooldown_max_s)
"""The longest rest by default (300 s): a provider that stays down is tried again every 5
minutes (after 9 failures in a row), one whose quota comes back in hours pays a failed
attempt every 5 minutes, and a wrong retry-after can't keep it out of use for longer."""
BACKOFF_START_S = 1.0
"""Rest after a first failure without retry-after: a single blip costs a second."""
BACKOFF_FACTOR = 2.0
MAX_ENTRIES = 1024
"""Providers remembered at once (config edits may rename entries): the one that failed least
recently is forgotten first."""
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
"""delta-seconds is digits; the SDKs also take a fraction, and `retry-after-ms` has one."""


@dataclass(frozen=True)
class Cooling:
    """Whether an entry rests now: the seconds left (0: it doesn't) and why."""

    seconds: float
    why: str = ""

    def __bool__(self) -> bool:
        return self.seconds > 0

    @property
    def note(self) -> str:
        """For the access log: `cooling down 41 s after 429, retry-after 60 s`."""
        return f"cooling down {math.ceil(self.seconds)} s after {self.why}"


NOT_COOLING = Cooling(0.0)


@dataclass
class _Rest:
    streak: int
    """Failures in a row."""
    until: float
    length: float
    """The rest as it was set: a clock stepped back can't make it longer."""
    why: str


def is_failure(outcome: int | str) -> bool:
    """Whether an attempt's outcome counts against its provider: a status (429, 5xx) or the
    reason it got no answer (any reason counts)."""
    return isinstance(outcome, str) or outcome == 429 or outcome >= 500


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """What a `retry-after` value asks for, in seconds from `now`; None when absent or
    unreadable (the backoff applies then)."""
    text = (value or "").strip()
    if not text:
        return None
    if _DECIMAL.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # asctime's form, or `-0000`: HTTP-dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def retry_after_ms_seconds(value: str | None) -> float | None:
    """What a `retry-after-ms` value asks for, in seconds; None when absent or unreadable."""
    text = (value or "").strip()
    return float(text) / 1000 if _DECIMAL.fullmatch(text) else None


def _seconds(value: float) -> str:
    return f"{value:.3g}" if value < 10 else f"{value:.0f}"


class Cooldowns:
    """The cooldown table of one sidecar process, kept across config reloads."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._rests: dict[str, _Rest] = {}
        self._max_entries = max_entries

    def record(
        self,
        entry: str,
        outcome: int | str,
        headers: Mapping[str, str],
        now: float,
        max_rest_s: float = MAX_REST_S,
    ) -> None:
        """What one attempt at `entry` came to: its answer's status and headers (lower-case
        names; `retry-after`, `retry-after-ms` are read), or the reason it got no answer
        ("refused", "reset", "timeout") with no headers. The one call for whoever sees an
        attempt end."""
        if not is_failure(outcome):
            self.succeeded(entry)
            return
        retry_after, retry_after_ms = headers.get("retry-after"), headers.get("retry-after-ms")
        self.failed(entry, outcome, retry_after, now, retry_after_ms, max_rest_s)

    def failed(
        self,
        entry: str,
        failure: int | str,
        retry_after: str | None,
        now: float,
        retry_after_ms: str | None = None,
        max_rest_s: float = MAX_REST_S,
    ) -> None:
        """`entry` failed at `now` (a status or a reason), with these headers' values, if any.
        A status that is no failure (`is_failure`) is ignored."""
        if not is_failure(failure):
            return
        previous = self._rests.pop(entry, None)
        streak = previous.streak + 1 if previous else 1
        asked = retry_after_ms_seconds(retry_after_ms)
        if asked is None:
            asked = retry_after_seconds(retry_after, now)
        if asked is not None:
            rest = asked
            why = f"{failure}, retry-after {_seconds(asked)} s"
        else:
            rest = BACKOFF_START_S * BACKOFF_FACTOR ** min(streak - 1, 64)
            why = f"{failure}, {streak} failures in a row" if streak > 1 else str(failure)
        rest = min(rest, max_rest_s)
        self._rests[entry] = _Rest(streak, now + rest, rest, why)
        while len(self._rests) > self._max_entries:
            del self._rests[next(iter(self._rests))]

    def succeeded(self, entry: str) -> None:
        """`entry` answered: its streak and any rest end."""
        self._rests.pop(entry, None)

    def cooling(self, entry: str, now: float) -> Cooling:
        """Whether `entry` rests at `now`, and why; its rest ends at its deadline exactly."""
        rest = self._rests.get(entry)
        if rest is None or now >= rest.until:
            return NOT_COOLING
        return Cooling(min(rest.until - now, rest.length), rest.why)
