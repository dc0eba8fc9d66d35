"""The router as a decision stage: sticky turns, shared work, batching, and every fallback."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from extproc.app import build_runtime, load_router
from extproc.config import Config, Routing, parse
from extproc.decisions import routing
from extproc.decisions.decision import Request, decide
from extproc.decisions.router import window
from extproc.decisions.router.engine import ArchRouter
from extproc.decisions.routing import RouterStage
from tests.support.captured import captured
from tests.support.conversations import conversations
from tests.support.tiny_model import ROUTES, session_model_dir

OWNERS = {
    "code_generation": "deepseek/deepseek-chat",
    "code_review": "anthropic/claude-sonnet-4-5",
    "bug_fixing": "anthropic/claude-haiku-4-5",
    "general_chat": "anthropic/claude-haiku-4-5",
}


def routed_config(model_dir: Path | str, **routing: object) -> Config:
    """Providers owning the tiny model's routes (names and descriptions as it was steered on)."""
    lines = ["llm_providers:"]
    for model in dict.fromkeys(OWNERS.values()):
        lines += [f"  - model: {model}", "    access_key: k", "    routing_preferences:"]
        lines += [
            f"      - {{name: {name}, description: '{description}'}}"
            for name, description in ROUTES
            if OWNERS[name] == model
        ]
    lines += ["  - model: anthropic/claude-opus-4-8", "    default: true"]
    lines += ["routing:", f"  model_dir: {model_dir}"]
    lines += [f"  {key}: {value}" for key, value in routing.items()]
    return parse("\n".join(lines) + "\n")


class CountingRouter(ArchRouter):
    """The real model, counting how often and with how many windows it is asked."""

    batches: list[int]

    def classify(self, routes, windows):
        self.batches.append(len(windows))
        return super().classify(routes, windows)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return session_model_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def model(model_dir) -> Iterator[CountingRouter]:
    router = CountingRouter(model_dir)
    router.batches = []
    yield router
    router.close()


@pytest.fixture
def stage(model, model_dir) -> RouterStage:
    model.batches.clear()
    stage = RouterStage(routed_config(model_dir).routing)
    stage.attach(model)
    return stage


async def run(stage: RouterStage, body: dict, config: Config | None = None):
    config = config or routed_config(stage.routing.model_dir)
    runtime = build_runtime(config, stage)
    return await decide(config, Request(body["model"], body), runtime.stages)


def user_turn(text: str) -> dict:
    return {"model": "claude-opus-4-8", "messages": [{"role": "user", "content": text}]}


def first_request_of(tool_loop: dict) -> dict:
    """The request that started this tool loop: messages up to the latest user text."""
    body = copy.deepcopy(tool_loop)
    while body["messages"][-1]["role"] != "user" or any(
        block.get("type") == "tool_result"
        for block in body["messages"][-1]["content"]
        if isinstance(block, dict)
    ):
        body["messages"].pop()
    return body


async def test_router_decides_then_the_tool_loop_is_sticky(stage, model):
    tool_loop = captured("tool-loop")["body"]
    first = await run(stage, first_request_of(tool_loop))
    assert first.source == "router"
    assert first.route == "code_review"  # what the tiny model (seeded) says to this turn
    assert first.routed_model == OWNERS[first.route]
    assert first.router_ms > 0

    follow_up = await run(stage, tool_loop)
    assert follow_up.source == "sticky"
    assert (follow_up.route, follow_up.routed_model) == (first.route, first.routed_model)
    assert model.batches == [1], "the tool-loop request must not run the model again"


async def test_a_sticky_request_tokenizes_nothing(stage, model, monkeypatch):
    """Each request of a turn carries the same texts; counting their tokens again cost a
    pasted log's tokenization on every tool-loop request of its turn."""

    def pasted_log() -> dict:  # built anew each time, as each request's JSON is parsed anew
        return user_turn("why does this fail?\n" + "".join(f"line {i}\n" for i in range(5000)))

    first = await run(stage, pasted_log())
    tokenized: list[str] = []
    monkeypatch.setattr(model, "encode", lambda text: tokenized.append(text) or [0])
    escaped: list[str] = []  # nor is any text escaped to JSON again (0.5 ms for 64 KB)
    for module in (routing, window):
        monkeypatch.setattr(module, "message_json", lambda _, text: escaped.append(text) or "")
    again = await run(stage, pasted_log())
    assert (again.source, again.route) == ("sticky", first.route)
    assert tokenized == [] and escaped == []


async def test_decision_matches_the_model_on_its_own(stage, model):
    windows = conversations(16, seed=11)
    bodies = [{"model": "claude-opus-4-8", "messages": window} for window in windows]
    decisions = [await run(stage, body) for body in bodies]
    assert [d.route for d in decisions] == model.classify(ROUTES, windows)
    assert {d.route for d in decisions} == {"code_generation", "code_review"}
    assert all(d.routed_model == OWNERS[d.route] for d in decisions)


async def test_concurrent_identical_requests_share_one_classification(stage, model):
    body = user_turn("generate a tokenizer for our config language")
    decisions = await asyncio.gather(*(run(stage, body) for _ in range(5)))
    assert len({d.routed_model for d in decisions}) == 1
    assert model.batches == [1]


async def test_concurrent_fresh_intents_are_batched(stage, model):
    bodies = [user_turn(f"task number {i}: explain this function") for i in range(6)]
    decisions = await asyncio.gather(*(run(stage, body) for body in bodies))
    assert all(d.source == "router" for d in decisions)
    assert model.batches == [6]  # all six queue up before the worker takes its first batch


async def test_title_calls_skip_the_router(stage, model):
    decision = await run(stage, captured("interactive-title")["body"])
    assert decision.source == "requested"
    assert model.batches == []


async def test_timeout_falls_back_and_keeps_the_turn_on_it(model, model_dir):
    stage = RouterStage(dataclasses.replace(Routing(), model_dir=str(model_dir), timeout_ms=0))
    stage.attach(model)
    body = user_turn("write a function that parses dates")
    decision = await run(stage, body)
    assert (decision.source, decision.routed_model) == ("fallback", "anthropic/claude-opus-4-8")
    assert decision.note == "router timed out after 0 ms"
    again = await run(stage, body)
    assert (again.source, again.routed_model) == ("sticky", "anthropic/claude-opus-4-8")


async def test_router_exception_falls_back(model_dir):
    broken = ArchRouter(model_dir)
    broken.close()
    stage = RouterStage(routed_config(model_dir).routing)
    stage.attach(broken)
    decision = await run(stage, user_turn("review my code"))
    assert decision.source == "fallback"
    assert decision.note.startswith("router failed: RouterModelError")
    assert decision.routed_model == "anthropic/claude-opus-4-8"


async def test_missing_model_falls_back_with_the_reason(tmp_path):
    config = routed_config(tmp_path / "no-model")
    stage = RouterStage(config.routing)
    assert (await run(stage, user_turn("x"), config)).note == "router model is loading"
    await load_router(stage, config)
    decision = await run(stage, user_turn("write code"), config)
    assert decision.source == "fallback"
    assert "does not exist" in decision.note and str(tmp_path / "no-model") in decision.note
    request = user_turn("claude-haiku-4-5 please")
    request["model"] = "claude-haiku-4-5"
    assert (await run(stage, request, config)).routed_model == "anthropic/claude-haiku-4-5"


async def test_load_router_loads_the_configured_model(model_dir):
    config = routed_config(model_dir)
    stage = RouterStage(config.routing)
    await load_router(stage, config)
    assert (await run(stage, user_turn("write a lexer"), config)).source == "router"
    stage.model.classifier.close()


class LongFailure:
    """A classifier that fails with a very long message."""

    def classify(self, routes, windows):
        raise ValueError("x" * 500)

    def count_tokens(self, text: str) -> int:
        return len(text)


async def test_a_router_failure_is_logged_and_noted_in_200_characters(model_dir, caplog):
    stage = RouterStage(routed_config(model_dir).routing)
    stage.attach(LongFailure())
    with caplog.at_level("ERROR", logger="extproc.decisions.routing"):
        decision = await run(stage, user_turn("review my code"))
    assert decision.note == ("router failed: ValueError: " + "x" * 500)[:200]
    [record] = [r for r in caplog.records if r.name == "extproc.decisions.routing"]
    assert (record.getMessage(), record.exc_info[0]) == ("router failed", ValueError)
