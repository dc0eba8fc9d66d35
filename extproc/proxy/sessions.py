"""The latest decision of each Claude Code session: for `extproc statusline`, and to see a
switch of models mid-session.

Claude Code sends its session id on every request (`x-claude-code-session-id`). The sidecar
keeps, per session, what the status line shows: the model, route and source of the latest
decision, the router's milliseconds, that answer's tokens and the session's cost, never any
request content. A provider's prompt cache belongs to one model: a session moved to another
model pays for its whole context again, so the access log marks the first request after
such a switch (`switched_from`) for `extproc logs --summary` to count. The store is
bounded: the least recently seen session goes first past `MAX_SESSIONS`, and a session not
seen for `EXPIRES_S` is gone. The health port serves it at `/sessions/<id>`
(extproc.proxy.server).

An Anthropic-format answer that the sidecar does not read (no `listener.log_tokens`) is
counted and priced in Envoy (extproc/control/usage.lua), which then reports it with one
`POST /sessions/<id>/answered` to the health port, after the answer has passed:
`answer_report` reads that body.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from extproc.decisions.decision import Decision

HEADER = "x-claude-code-session-id"
PATH = "/sessions/"
"""The health port's path for a session: PATH + its id."""
MAX_SESSIONS = 1000
EXPIRES_S = 12 * 3600
_SESSION_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
"""What a session id may look like (Claude Code's are UUIDs): anything else is not kept."""
ANSWERED = "/answered"
"""The health port's path for Envoy's report of a native answer: PATH + id + ANSWERED."""
MAX_REPORT_BYTES = 512
"""A report is a handful of numbers: a larger body is refused unread."""
REPORT_COUNTS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


@dataclass
class SessionRecord:
    """What the status line shows of one session."""

    model: str
    route: str
    source: str
    router_ms: float
    requests: int = 1
    """Decisions made for this session so far."""
    input_tokens: int | None = None
    """Of the latest answer, when the sidecar read its usage (translated, or log_tokens)."""
    output_tokens: int | None = None
    cost_usd: float | None = None
    """The session's cost so far, once any answer's cost is known (`SessionStore.answered`)."""
    seen: float = 0.0
    """When the session last sent a request (the store's clock)."""

    def as_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key != "seen"}


class SessionStore:
    """Session id → its latest decision, least recently seen first; shared across config
    reloads (extproc.app.Sidecar hands the same store to every runtime)."""

    def __init__(
        self,
        max_sessions: int = MAX_SESSIONS,
        expires_s: float = EXPIRES_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_sessions = max_sessions
        self.expires_s = expires_s
        self.clock = clock
        self._sessions: OrderedDict[str, SessionRecord] = OrderedDict()

    def decided(self, session: str, decision: Decision) -> str | None:
        """A request of `session` was decided: it becomes the session's latest. Returns the
        model the session used before when this decision switches it to another one (a
        session forgotten or expired and seen again counts as new: no switch)."""
        if not _SESSION_ID.fullmatch(session):
            return None
        self._expire()
        previous = self._sessions.pop(session, None)
        self._sessions[session] = SessionRecord(
            model=decision.routed_model,
            route=decision.route,
            source=decision.source,
            router_ms=round(decision.router_ms, 2),
            requests=previous.requests + 1 if previous else 1,
            cost_usd=previous.cost_usd if previous else None,
            seen=self.clock(),
        )
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        if previous is None or previous.model == decision.routed_model:
            return None
        return previous.model

    def answered(self, session: str, usage: dict[str, int], cost_usd: float | None = None) -> bool:
        """The latest answer's token counts, and its cost (added to the session's) if known.
        False when the session is unknown: nothing is kept then."""
        record = self._sessions.get(session)
        if record is None:
            return False
        record.input_tokens = usage.get("input_tokens", record.input_tokens)
        record.output_tokens = usage.get("output_tokens", record.output_tokens)
        if cost_usd is not None:
            record.cost_usd = (record.cost_usd or 0.0) + cost_usd
        return True

    def get(self, session: str) -> SessionRecord | None:
        """The session's record, or None when it is unknown or expired."""
        self._expire()
        return self._sessions.get(session)

    def _expire(self) -> None:
        """Drop the sessions not seen for `expires_s`: the oldest come first."""
        oldest = self.clock() - self.expires_s
        while self._sessions:
            session, record = next(iter(self._sessions.items()))
            if record.seen > oldest:
                return
            del self._sessions[session]


def answer_report(body: bytes) -> tuple[dict[str, int], float | None] | None:
    """The counts and cost in Envoy's report of one answer (usage.lua), or None when the body
    is anything but a JSON object of those names, each a count (a whole number from 0) or,
    for `cost_usd`, a finite number from 0."""
    try:
        report = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(report, dict) or not set(report) <= {*REPORT_COUNTS, "cost_usd"}:
        return None
    cost = report.pop("cost_usd", None)  # orjson takes no NaN or infinity
    if cost is not None and not (type(cost) in (int, float) and cost >= 0):
        return None
    if not all(type(count) is int and count >= 0 for count in report.values()):
        return None
    return report, None if cost is None else float(cost)
