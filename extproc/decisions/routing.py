"""The classifier as a decision stage: sticky cache, rules, shared in-flight work, batching,
fallback.

`RouterStage` sits between the explicit/alias stages and the requested/default
ones. The config's rules decide before the model runs (no model call), and their decisions
are sticky like the router's. It never fails a request: a missing model, a timeout or an exception
yields the fallback decision, labelled `fallback` with the reason in `note`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from extproc.config import Config, Routing
from extproc.config.rules import Rule
from extproc.decisions import decision
from extproc.decisions.decision import Decision, Request, Source
from extproc.decisions.router.decoding import OTHER
from extproc.decisions.router.prompt import Conversation, Routes
from extproc.decisions.router.window import (
    conversation_window,
    estimate_tokens,
    message_json,
    window_budget,
)
from extproc.decisions.rules import Facts, first_rule

log = logging.getLogger("extproc.decisions.routing")

LOADING = "router model is loading"
STICKY_ENTRIES = 8192


class Classifier(Protocol):
    """What the stage needs from a model (ArchRouter is the real one)."""

    def classify(self, routes: Routes, windows: list[Conversation]) -> list[str]: ...

    def count_tokens(self, text: str) -> int: ...


class BatchingClassifier:
    """Runs a blocking classifier on one worker thread, batching calls that queue up.

    While the model works on one batch, new requests wait in `_pending`; the next
    batch takes all of them that share a route config, in one `classify` call.
    """

    def __init__(self, classifier: Classifier):
        self.classifier = classifier
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="router")
        self._pending: list[tuple[Routes, Conversation, asyncio.Future[str]]] = []
        self._worker: asyncio.Task[None] | None = None

    def submit(self, routes: Routes, window: Conversation) -> asyncio.Future[str]:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.append((routes, window, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            routes = self._pending[0][0]
            batch = [item for item in self._pending if item[0] == routes]
            self._pending = [item for item in self._pending if item[0] != routes]
            windows = [window for _, window, _ in batch]
            try:
                answers = await loop.run_in_executor(
                    self._executor, self.classifier.classify, routes, windows
                )
            except Exception as exc:
                answers = [exc] * len(batch)
            for (_, _, future), answer in zip(batch, answers, strict=True):
                if future.done():
                    continue
                if isinstance(answer, Exception):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)


class TokenCounts:
    """A classifier's token counter that remembers the counts of recent texts.

    Every request of one user turn carries the same texts, and the window must be measured
    in tokens before the sticky cache can be asked: without this, each tool-loop request
    re-tokenized them (a 60 KB pasted log on every request of its turn). Keys are the text's
    length and hash, so a pasted log is not kept alive here (a collision of both could only
    misjudge how much of the conversation fits the window). The oldest entry goes first, not
    the least recently used: simpler, and a text forgotten too soon is only counted again.
    """

    def __init__(self, count: Callable[[str], int], entries: int = 4096):
        self._count = count
        self._entries = entries
        self._counts: dict[tuple[Any, ...], int] = {}

    def __call__(self, text: str) -> int:
        return self._remembered((len(text), hash(text)), text)

    def message(self, role: str, text: str) -> int:
        """Tokens of one message as the prompt carries it, keyed on its raw text: a hit
        skips escaping it to JSON (``window.prompt_tokens``)."""
        key = (role, len(text), hash(text))
        tokens = self._counts.get(key)
        return self._remembered(key, message_json(role, text)) if tokens is None else tokens

    def _remembered(self, key: tuple[Any, ...], text: str) -> int:
        tokens = self._counts.get(key)
        if tokens is None:
            tokens = self._counts[key] = self._count(text)
            if len(self._counts) > self._entries:
                del self._counts[next(iter(self._counts))]  # the oldest
        return tokens


@dataclass(frozen=True)
class Outcome:
    """A classification result: the route name, or None with the fallback reason."""

    route: str | None
    note: str = ""
    lasting: bool = True
    """False while the model is still loading: don't pin the turn to that fallback."""


def routes_of(config: Config) -> Routes:
    return tuple((route.name, route.description) for route, _ in config.routes)


def turn_key(config: Config, window: Conversation, facts: Facts) -> str:
    """The key of a turn a rule decided: the window, and what rules read that stays the same
    through a turn's tool loop (the headers they name, the tool names), so that another
    session whose first words are the same but whose headers or tools differ is not taken."""
    rules = [(rule.name, rule.provider.name) for rule in config.rules]
    headers = [(name, facts.headers.get(name)) for name in config.rule_headers]
    facts_read = ["rules", rules, window, headers, facts.tool_names]
    return hashlib.sha256(orjson.dumps(facts_read)).hexdigest()


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def rule_decision(source: Source, rule: Rule, request: Request, started: float) -> Decision:
    return Decision(
        source,
        rule.provider,
        request.model,
        rule.name,
        _ms(started),
        reasoning_effort=rule.reasoning_effort,
    )


def window_key(routes: Routes, window: Conversation) -> str:
    """Stable across processes and replicas: the same intent gets the same key everywhere."""
    return hashlib.sha256(orjson.dumps([routes, window])).hexdigest()


def is_utility_call(body: dict[str, Any]) -> bool:
    """Claude Code's background calls (session titles) carry no tools and ask for JSON output."""
    output = body.get("output_config")
    return not body.get("tools") and isinstance(output, dict) and "format" in output


class RouterStage:
    """A decision stage that classifies the conversation window against the routes."""

    def __init__(self, routing: Routing):
        self.routing = routing
        self.model: BatchingClassifier | None = None
        self.count_tokens: Callable[[str], int] = estimate_tokens
        """The window's token counter: the model's tokenizer once one is attached."""
        self._device = "cpu"
        self.unavailable = LOADING
        self._sticky: OrderedDict[str, Outcome] = OrderedDict()
        self._in_flight: dict[str, asyncio.Future[Outcome]] = {}

    def attach(self, classifier: Classifier | None, unavailable: str = "") -> None:
        """Install the loaded model, or record why there is none."""
        self.model = BatchingClassifier(classifier) if classifier else None
        self.count_tokens = TokenCounts(classifier.count_tokens) if classifier else estimate_tokens
        self._device = getattr(classifier, "device", "cpu")
        self.unavailable = unavailable

    @property
    def window_tokens(self) -> int:
        """The window's budget, as configured now (reloads may change it): ``auto`` is
        resolved for the device the model runs on."""
        return window_budget(self.routing.window_tokens, self._device)

    async def __call__(self, config: Config, request: Request) -> Decision | None:
        routes = routes_of(config)
        utility = is_utility_call(request.body)
        if not config.rules and (not routes or utility):
            return None
        started = time.perf_counter()
        window = (
            []
            if utility
            else conversation_window(request.body, self.window_tokens, self.count_tokens)
        )
        key = window_key(routes, window) if window else ""
        if config.rules:
            decision = self._by_rule(config, request, window, key, started)
            if decision is not None:
                return decision
        if not routes or not window:
            return None
        cached = self._sticky.get(key)
        source: Source = "sticky"
        if cached is None:
            source = "router"
            cached = await self._classify(key, routes, window)
        else:
            self._sticky.move_to_end(key)
        elapsed = (time.perf_counter() - started) * 1000
        return await self._decision(config, request, cached, source, elapsed)

    def _by_rule(
        self, config: Config, request: Request, window: Conversation, key: str, started: float
    ) -> Decision | None:
        """The first rule that holds, or the turn's decision for a tool-loop request.

        A new turn (a user's text, a subagent, a compaction...) reads the rules afresh. A
        tool-loop request keeps its turn's model: the rule that decided the turn, else the
        router's sticky decision; only a turn nothing decided yet reads the rules.
        """
        facts = request.facts
        turn = turn_key(config, window, facts) if window else ""
        if facts.kind == "tool_result":
            remembered = self._sticky.get(turn) if turn else None
            if remembered is not None:
                self._sticky.move_to_end(turn)
                rule = config.rule_named(remembered.route or "")
                return rule_decision("sticky", rule, request, started)
            if key in self._sticky:
                return None  # the router decided this turn: its sticky decision follows
        rule = first_rule(config.rules, facts)
        if rule is None:
            return None
        if turn:
            self._remember(turn, Outcome(rule.name))
        return rule_decision("rule", rule, request, started)

    async def _classify(self, key: str, routes: Routes, window: Conversation) -> Outcome:
        """Classify once per key: concurrent identical requests share one computation."""
        shared = self._in_flight.get(key)
        if shared is None:
            shared = asyncio.ensure_future(self._run(routes, window))
            self._in_flight[key] = shared
            shared.add_done_callback(lambda _: self._in_flight.pop(key, None))
        outcome = await asyncio.shield(shared)
        self._remember(key, outcome)
        return outcome

    async def _run(self, routes: Routes, window: Conversation) -> Outcome:
        if self.model is None:
            return Outcome(None, self.unavailable, lasting=self.unavailable != LOADING)
        timeout = self.routing.timeout_ms / 1000
        try:
            return Outcome(await asyncio.wait_for(self.model.submit(routes, window), timeout))
        except TimeoutError:
            return Outcome(None, f"router timed out after {self.routing.timeout_ms} ms")
        except Exception as exc:
            log.exception("router failed")
            return Outcome(None, f"router failed: {type(exc).__name__}: {exc}"[:200])

    def _remember(self, key: str, outcome: Outcome) -> None:
        """Remember outcomes, fallbacks included, so one user turn never switches models."""
        if not outcome.lasting:
            return
        self._sticky[key] = outcome
        while len(self._sticky) > STICKY_ENTRIES:
            self._sticky.popitem(last=False)

    async def _decision(
        self, config: Config, request: Request, outcome: Outcome, source: Source, ms: float
    ) -> Decision:
        owner = config.route_owners.get(outcome.route) if outcome.route else None
        if owner is not None:
            route = next(r for r in owner.routes if r.name == outcome.route)
            effort = route.reasoning_effort
            return Decision(source, owner, request.model, route.name, ms, reasoning_effort=effort)
        after = await decision.decide(config, request, decision.AFTER_ROUTER)
        if outcome.route is None:
            # A reused fallback stays labelled sticky: the turn keeps the model it started on.
            label: Source = "sticky" if source == "sticky" else "fallback"
            return Decision(label, after.provider, request.model, "", ms, outcome.note)
        return Decision(source, after.provider, request.model, OTHER, ms)
