"""Routing policy held by behaviour: what the router stage decides, labels and remembers.

Each test here was checked by making its bug by hand in the product code (see
docs/testing.md): the sticky key without the routes, a loading fallback pinned to the turn,
`other` logged as no route, the default labelled `requested`, count_tokens through the router,
a batch mixing route configs, and the sticky cache evicting its newest entry.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from envoy_data_plane.envoy.service.ext_proc.v3 import ProcessingResponse

from extproc.app import build_runtime
from extproc.config import Config, parse
from extproc.decisions import routing
from extproc.decisions.decision import AFTER_ROUTER, BEFORE_ROUTER, Decision, Request, decide
from extproc.decisions.router.engine import ArchRouter
from extproc.decisions.router.window import message_json
from extproc.decisions.routing import BatchingClassifier, RouterStage, routes_of
from extproc.proxy.exchange import Exchange
from tests.support.tiny_model import ROUTES, session_model_dir

DEFAULT = "anthropic/claude-opus-4-8"
OWNERS = {"code_generation": "deepseek/deepseek-chat", "code_review": "anthropic/claude-sonnet-4-5"}


def policy_config(model_dir: Path | str, review: str = dict(ROUTES)["code_review"]) -> Config:
    """Two routes of the tiny model, each owned by one provider, and a default; `review` is
    the code_review route's description."""
    generation = dict(ROUTES)["code_generation"]
    return parse(
        f"""\
llm_providers:
  - model: deepseek/deepseek-chat
    access_key: k
    routing_preferences: [{{name: code_generation, description: '{generation}'}}]
  - model: anthropic/claude-sonnet-4-5
    access_key: k
    routing_preferences: [{{name: code_review, description: '{review}'}}]
  - model: {DEFAULT}
    access_key: k
    default: true
model_aliases: {{deep: deepseek/deepseek-chat}}
routing: {{model_dir: {model_dir}}}
"""
    )


class RecordingRouter(ArchRouter):
    """The real tiny model, recording each batch it is given: (routes, number of windows).
    `answer`, when set, replaces its answers (the tiny model never says `other` by itself)."""

    calls: list[tuple[tuple[tuple[str, str], ...], int]]
    answer: str | None

    def classify(self, routes, windows):
        self.calls.append((tuple(routes), len(windows)))
        answers = super().classify(routes, windows)
        return [self.answer] * len(windows) if self.answer else answers


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return session_model_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def model(model_dir) -> Iterator[RecordingRouter]:
    router = RecordingRouter(model_dir)
    yield router
    router.close()


@pytest.fixture
def config(model_dir) -> Config:
    return policy_config(model_dir)


@pytest.fixture
def stage(model, config) -> RouterStage:
    model.calls, model.answer = [], None
    stage = RouterStage(config.routing)
    stage.attach(model)
    return stage


def user_turn(text: str, model: str = "claude-opus-4-8") -> dict:
    return {"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": text}]}


async def run(stage: RouterStage, body: dict, config: Config):
    runtime = build_runtime(config, stage)
    return await decide(config, Request(body["model"], body), runtime.stages)


async def test_a_changed_route_description_classifies_again(stage, model, config, model_dir):
    """The sticky key covers the route config: a decision made under the old descriptions
    is not reused under new ones."""
    body = user_turn("write a function that parses dates")
    assert (await run(stage, body, config)).source == "router"
    assert (await run(stage, body, config)).source == "sticky"
    changed = policy_config(model_dir, review="reading and critiquing code written by others")
    assert (await run(stage, body, changed)).source == "router"
    assert (await run(stage, body, changed)).source == "sticky"
    assert model.calls == [(routes_of(config), 1), (routes_of(changed), 1)]


async def test_a_request_while_the_model_loads_is_not_pinned_to_its_fallback(model, config):
    model.calls, model.answer = [], None
    stage = RouterStage(config.routing)  # nothing attached yet: the model is loading
    body = user_turn("write a function that parses dates")
    loading = await run(stage, body, config)
    assert (loading.source, loading.routed_model, loading.note) == (
        "fallback",
        DEFAULT,
        "router model is loading",
    )
    stage.attach(model)
    loaded = await run(stage, body, config)
    assert loaded.source == "router"
    assert loaded.routed_model == OWNERS[loaded.route]
    assert len(model.calls) == 1


async def test_a_lasting_fallback_is_pinned_to_the_turn(model, config):
    """The counterpart: a router that is unavailable (not loading) keeps the turn on its
    fallback even once a model appears, so one turn never switches models."""
    model.calls, model.answer = [], None
    stage = RouterStage(config.routing)
    stage.attach(None, "router unavailable: no model")
    body = user_turn("write a function that parses dates")
    assert (await run(stage, body, config)).source == "fallback"
    stage.attach(model)
    again = await run(stage, body, config)
    assert (again.source, again.routed_model, again.note) == (
        "sticky",
        DEFAULT,
        "router unavailable: no model",
    )
    assert model.calls == []


@pytest.mark.parametrize(
    ("requested", "served_by"), [("claude-opus-4-8", DEFAULT), ("gpt-unknown", DEFAULT)]
)
async def test_the_router_answering_other_is_logged_as_route_other(
    stage, model, config, requested, served_by
):
    model.answer = "other"
    body = user_turn("what is the weather like", model=requested)
    first = await run(stage, body, config)
    again = await run(stage, body, config)
    for decision, source in ((first, "router"), (again, "sticky")):
        logged = decision.metadata()
        del logged["router_ms"]
        assert logged == {
            "source": source,
            "route": "other",
            "requested_model": requested,
            "routed_model": served_by,
            "provider": served_by,
            "note": "",
        }


@pytest.mark.parametrize(
    ("requested", "source", "served_by"),
    [
        ("claude-sonnet-4-5", "requested", "anthropic/claude-sonnet-4-5"),
        ("gpt-unknown", "default", DEFAULT),
        ("deepseek/deepseek-chat", "explicit", "deepseek/deepseek-chat"),
        ("deep", "alias", "deepseek/deepseek-chat"),
    ],
)
async def test_each_rule_after_the_router_labels_itself(config, requested, source, served_by):
    """With no router stage (as for count_tokens), the rule that decided is the label."""
    stages = (*BEFORE_ROUTER, *AFTER_ROUTER)
    decision = await decide(config, Request(requested, user_turn("hi")), stages)
    assert decision.metadata() == {
        "source": source,
        "route": "",
        "requested_model": requested,
        "routed_model": served_by,
        "provider": served_by,
        "router_ms": 0.0,
        "note": "",
    }


@pytest.mark.parametrize(
    ("path", "source", "calls"),
    [("/v1/messages/count_tokens", "requested", 0), ("/v1/messages?beta=true", "router", 1)],
)
async def test_count_tokens_never_runs_the_router(stage, model, config, path, source, calls):
    exchange = Exchange(build_runtime(config, stage))
    headers = {":path": path, ":method": "POST", "content-type": "application/json"}
    exchange.on_request_headers(headers, False)
    body = user_turn("write a function that parses dates")
    reply = ProcessingResponse.parse(await exchange.on_request_body(orjson.dumps(body)))
    assert reply.request_body.response.header_mutation is not None
    assert exchange.decision is not None and exchange.decision.source == source
    assert len(model.calls) == calls


class EchoClassifier:
    """Answers each window with its own text, so an answer given to the wrong request shows."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[tuple[str, str], ...], int]] = []

    def classify(self, routes, windows):
        self.calls.append((tuple(routes), len(windows)))
        return [window[-1]["content"] for window in windows]

    def count_tokens(self, text: str) -> int:
        return len(text)


async def test_one_batch_never_mixes_windows_of_different_route_configs(model_dir):
    first = routes_of(policy_config(model_dir))
    second = routes_of(policy_config(model_dir, review="reading code written by others"))
    echo = EchoClassifier()
    batching = BatchingClassifier(echo)
    texts = [f"task {i}: write a lexer" for i in range(4)]
    answers = await asyncio.gather(
        *(
            batching.submit((first, second)[i % 2], [{"role": "user", "content": text}])
            for i, text in enumerate(texts)
        )
    )
    assert answers == texts
    assert echo.calls == [(first, 2), (second, 2)]


async def test_the_sticky_cache_forgets_the_least_recently_used_turn(
    stage, model, config, monkeypatch
):
    monkeypatch.setattr(routing, "STICKY_ENTRIES", 2)
    a, b, c = (user_turn(f"turn {name}: write a parser") for name in "abc")
    sources = [(await run(stage, body, config)).source for body in (a, b, a, c, a, c, b)]
    # a and b fill the cache; a is used again, so c evicts b (the least recently used);
    # b, classified again, then evicts a (used before c).
    assert sources == ["router", "router", "sticky", "router", "sticky", "sticky", "router"]
    assert len(model.calls) == 4


def test_the_access_log_shows_router_ms_to_the_hundredth(config):
    decision = Decision("router", config.default_provider, "m", "code_review", 412.3456)
    assert decision.metadata()["router_ms"] == 412.35


def test_token_counts_remember_recent_texts_and_forget_the_oldest():
    counted: list[str] = []

    def count(text: str) -> int:
        """Each real count answers a new number, so a remembered one shows."""
        counted.append(text)
        return len(counted)

    counts = routing.TokenCounts(count, entries=3)
    assert [counts("one two"), counts("red"), counts("one two")] == [1, 2, 1]
    # A text of the same length is another text.
    assert counts("six ten") == 3
    assert counted == ["one two", "red", "six ten"]
    # A message is counted as the prompt carries it, and remembered by role and raw text;
    # a fourth entry forgets the oldest ("one two").
    assert [counts.message("user", 'say "hi"'), counts.message("user", 'say "hi"')] == [4, 4]
    assert counted[-1] == message_json("user", 'say "hi"')
    assert [counts("red"), counts("one two")] == [2, 5]
    assert counts.message("user", 'say "ho"') == 6
    assert counts.message("assistant", 'say "hi"') == 7


@pytest.mark.parametrize(
    ("extra", "source"),
    [
        ({"output_config": {"format": {"type": "json_schema"}}}, "requested"),
        (
            {"output_config": {"format": {"type": "json_schema"}}, "tools": [{"name": "t"}]},
            "router",
        ),
        ({"output_config": {"effort": "high"}}, "router"),
    ],
    ids=["session title", "structured output with tools", "effort only"],
)
async def test_claude_codes_background_calls_skip_the_router(stage, model, config, extra, source):
    """A call with no tools that asks for JSON (a session title) keeps its model."""
    body = {**user_turn("write a parser", model="claude-sonnet-4-5"), **extra}
    decision = await run(stage, body, config)
    assert decision.source == source
    assert len(model.calls) == (source == "router")


class GatedClassifier(EchoClassifier):
    """Echoes, once let through; `entered` is set when a batch reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.gate = threading.Event(), threading.Event()

    def classify(self, routes, windows):
        self.entered.set()
        self.gate.wait(10)
        return super().classify(routes, windows)


async def test_a_request_that_gave_up_does_not_cost_the_rest_of_its_batch_their_answers():
    gated = GatedClassifier()
    batching = BatchingClassifier(gated)
    routes = (("r", "d"),)
    first, second = (batching.submit(routes, [{"role": "user", "content": t}]) for t in "ab")
    assert await asyncio.to_thread(gated.entered.wait, 10)
    first.cancel()  # its request timed out while the batch ran
    gated.gate.set()
    assert await asyncio.wait_for(second, 10) == "b"
    assert gated.calls == [(routes, 2)]
