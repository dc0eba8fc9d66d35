"""Which model each Claude Code session used last, to see a switch of models mid-session.

A provider's prompt cache belongs to one model: a session moved to another model pays for
its whole context again (uncached, or as a cache write). The access log marks the first
request after such a switch (`switched_from`), so that `extproc logs --summary` can count
what switching cost. Sessions are told apart by the `X-Claude-Code-Session-Id` header Claude
Code sends on every request. Only the model name is kept, for the most recent `limit`
sessions: a bounded, least-recently-used memory, never request content.
"""

from __future__ import annotations

from collections import OrderedDict

SESSION_HEADER = "x-claude-code-session-id"
SESSIONS_MAX = 4096
"""Sessions remembered at once; past it the least recently seen is forgotten. A session
forgotten and seen again counts as new: no switch is reported for its next request."""


class LastModels:
    """session id → the model its latest request was routed to, least recent first."""

    def __init__(self, limit: int = SESSIONS_MAX) -> None:
        self.limit = limit
        self._models: OrderedDict[str, str] = OrderedDict()

    def switch(self, session: str, model: str) -> str | None:
        """Record that `session` now uses `model`; the model it used before, if that differs."""
        if not session:
            return None
        previous = self._models.pop(session, None)
        self._models[session] = model
        if len(self._models) > self.limit:
            self._models.popitem(last=False)
        return previous if previous not in (None, model) else None

    def __len__(self) -> int:
        return len(self._models)
