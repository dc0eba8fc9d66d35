"""Rules decide before the router: one test per condition, stickiness, and what wins over them.

The router here is a stub that counts its calls: a rule that holds must cost no model call.
"""

from __future__ import annotations

import pytest

from extproc.app import build_runtime
from extproc.config import Config, parse
from extproc.decisions.decision import Decision, Request, decide
from extproc.decisions.routing import RouterStage
from extproc.metrics import Metrics
from extproc.proxy.exchange import _parse_body
from tests.support.captured import captured, wire_body
from tests.support.stub_router import FirstRoute

CONFIG = """\
llm_providers:
  - model: anthropic/claude-sonnet-4-5
    default: true
  - model: openai/gpt-4.1
    access_key: k
    routing_preferences: [{{name: code review, description: reviewing code}}]
  - model: gemini/gemini-2.5-flash
    name: cheap
    access_key: k
rules:
  - name: the rule
    model: cheap
    when: {when}
"""


def config_with(when: str) -> Config:
    return parse(CONFIG.format(when=when))


async def decided(
    config: Config, body: dict, headers: dict | None = None, stage: RouterStage | None = None
) -> Decision:
    """The decision for `body` sent as Claude Code writes it, read as the exchange reads it."""
    if stage is None:
        stage = RouterStage(config.routing)
        stage.attach(FirstRoute())
    runtime = build_runtime(config, stage)
    raw = wire_body(body)
    view, _ = _parse_body(raw)
    request = Request(str(body.get("model")), view, headers or {}, len(raw))
    return await decide(config, request, runtime.stages)


def fixture(name: str) -> dict:
    return captured(name)["body"]


def tool_loop_of_first_turn() -> dict:
    """The first-turn fixture's turn continued by a tool call and its result."""
    tool_loop = fixture("tool-loop")
    messages = [*fixture("first-turn")["messages"], *tool_loop["messages"][2:]]
    return {**tool_loop, "messages": messages}


def turn(text: str, **fields) -> dict:
    return {"model": "claude-opus-4-8", "messages": [{"role": "user", "content": text}], **fields}


IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}
CASES = {
    "kind": ("{kind: compact}", fixture("compact"), fixture("first-turn")),
    "kind list": ("{kind: [title, subagent]}", fixture("subagent"), fixture("tool-loop")),
    "images": ("{images: true}", fixture("image"), fixture("first-turn")),
    "no images": (
        "{images: false}",
        turn("hi"),
        turn([{"type": "text", "text": "hi"}, IMAGE]),
    ),
    "min_input_tokens": (
        "{min_input_tokens: 1000}",  # a token per three bytes of the body
        turn("x" * 3000),
        turn("x" * 2900),
    ),
    "thinking": (
        "{thinking: true}",
        turn("hi", thinking={"type": "enabled", "budget_tokens": 1024}),
        turn("hi", thinking={"type": "disabled"}),
    ),
    "tools": ("{tools: 'Gr?p'}", fixture("subagent-custom"), fixture("web-search")),
}


@pytest.mark.parametrize("condition", CASES)
async def test_each_condition_decides_when_it_holds(condition):
    when, holds, fails = CASES[condition]
    config = config_with(when)
    decision = await decided(config, holds)
    assert (decision.source, decision.route, decision.routed_model) == (
        "rule",
        "the rule",
        "gemini/gemini-2.5-flash",
    )
    other = await decided(config, fails)
    assert other.source != "rule" and other.routed_model != "gemini/gemini-2.5-flash"


async def test_a_header_condition_reads_the_forwarded_header():
    config = config_with("{header: {X-Team: 'infra-*'}}")
    assert (await decided(config, turn("hi"), {"x-team": "infra-eu"})).source == "rule"
    assert (await decided(config, turn("hi"), {"x-team": "web"})).source == "router"
    assert (await decided(config, turn("hi"))).source == "router"


async def test_a_rule_that_holds_costs_no_model_call_and_its_turn_stays_on_it():
    config = config_with("{kind: main}")
    router = FirstRoute()
    stage = RouterStage(config.routing)
    stage.attach(router)
    first = await decided(config, fixture("first-turn"), stage=stage)
    assert (first.source, first.route) == ("rule", "the rule")
    # The tool-loop request of that turn is a tool_result, not a main turn: the turn keeps
    # the model its rule chose.
    sticky = await decided(config, tool_loop_of_first_turn(), stage=stage)
    assert (sticky.source, sticky.route, sticky.routed_model) == (
        "sticky",
        "the rule",
        "gemini/gemini-2.5-flash",
    )
    assert router.windows == 0


async def test_the_title_call_is_decided_by_a_rule_though_the_router_skips_it():
    config = config_with("{kind: title}")
    decision = await decided(config, fixture("interactive-title"))
    assert (decision.source, decision.routed_model) == ("rule", "gemini/gemini-2.5-flash")


async def test_an_explicit_model_wins_over_a_rule():
    config = config_with("{}")
    body = turn("hi") | {"model": "openai/gpt-4.1"}
    decision = await decided(config, body)
    assert (decision.source, decision.routed_model) == ("explicit", "openai/gpt-4.1")


async def test_rules_decide_without_routes_or_a_router_model():
    config = parse(
        "llm_providers:\n  - model: anthropic/claude-sonnet-4-5\n"
        "  - {model: gemini/gemini-2.5-flash, access_key: k}\n"
        "rules: [{name: pics, model: gemini/gemini-2.5-flash, when: {images: true}}]\n"
    )
    stage = RouterStage(config.routing)  # no model attached
    decision = await decided(config, fixture("image"), stage=stage)
    assert (decision.source, decision.route) == ("rule", "pics")
    assert (await decided(config, turn("hi"), stage=stage)).source == "default"


async def test_rule_decisions_are_counted_by_rule_name():
    metrics = Metrics()
    metrics.record(await decided(config_with("{kind: compact}"), fixture("compact")))
    assert metrics.decisions.labels("the rule", "gemini/gemini-2.5-flash", "rule")._value.get() == 1


async def test_a_session_with_the_same_words_but_other_headers_is_not_taken_by_the_rule():
    """The sticky key is shared by the same words in two sessions: one team's rule must not
    carry over to the other, and a sticky router decision must not hide a rule."""
    config = config_with("{header: {x-team: 'infra-*'}}")
    stage = RouterStage(config.routing)
    stage.attach(FirstRoute())
    infra = await decided(config, fixture("first-turn"), {"x-team": "infra-eu"}, stage=stage)
    assert infra.source == "rule"
    web_loop = await decided(config, tool_loop_of_first_turn(), {"x-team": "web"}, stage=stage)
    assert (web_loop.source, web_loop.route) == ("router", "code review")
    web = await decided(config, fixture("first-turn"), {"x-team": "web"}, stage=stage)
    assert (web.source, web.route) == ("sticky", "code review")
    infra_again = await decided(config, fixture("first-turn"), {"x-team": "infra-1"}, stage=stage)
    assert infra_again.source == "rule"


async def test_a_routed_turns_tool_loop_stays_routed_though_a_rule_now_holds():
    config = config_with("{min_input_tokens: 25600}")
    stage = RouterStage(config.routing)
    stage.attach(FirstRoute())
    first = await decided(
        config, fixture("first-turn"), stage=stage
    )  # about 25,535 tokens; its tool loop 25,632
    assert first.source == "router"
    loop = await decided(config, tool_loop_of_first_turn(), stage=stage)
    assert (loop.source, loop.route) == ("sticky", "code review")
