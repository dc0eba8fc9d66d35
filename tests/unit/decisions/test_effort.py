"""`reasoning_effort` on routes and rules: read from config.yaml, and written into each
provider's own field (Anthropic's effort or thinking budget, Chat Completions'
`reasoning_effort`, the Responses API's `reasoning.effort`), never where a model refuses it."""

from __future__ import annotations

import orjson
import pytest
from envoy_data_plane.envoy.service.ext_proc.v3 import ProcessingResponse

from extproc.app import build_runtime
from extproc.config import ConfigError, parse
from extproc.decisions.effort import with_effort
from extproc.decisions.routing import RouterStage
from extproc.proxy.exchange import Exchange
from tests.support.captured import captured

# Without failover the downstream exchange's reply holds the body a provider gets (with
# failover, a translated chain head's body goes in the decision's metadata instead).
PROVIDERS = """\
listener: {failover: false}
llm_providers:
  - model: anthropic/claude-opus-4-8
    default: true
    routing_preferences:
      - {name: quick fixes, description: small edits, reasoning_effort: low}
      - {name: design, description: architecture, reasoning_effort: high}
  - {model: openai/o4-mini, provider_interface: openai-chat, access_key: k}
  - {model: openai/gpt-5.2, access_key: k}
  - {model: openai/gpt-4.1, access_key: k}
rules:
  - {name: chat, model: openai/o4-mini, reasoning_effort: low, when: {header: {x-to: chat}}}
  - {name: responses, model: openai/gpt-5.2, reasoning_effort: low, when: {header: {x-to: re*}}}
  - {name: plain, model: openai/gpt-4.1, when: {header: {x-to: plain}}}
"""


class ByWord:
    """Routes a window to the route its text names."""

    def classify(self, routes, windows):
        return [
            next(name for name, _ in routes if name in window[-1]["content"]) for window in windows
        ]

    def count_tokens(self, text: str) -> int:
        return len(text) // 4


def thinking_turn(text: str, **fields) -> dict:
    """A turn as Claude Code sends it to a model that thinks adaptively, without tools."""
    return {
        "model": "claude-opus-4-8",
        "max_tokens": 32000,
        "messages": [{"role": "user", "content": text}],
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
        **fields,
    }


async def upstream_body(body: dict, headers: dict[str, str] | None = None) -> dict:
    """The body the provider gets, through the exchange's request phases."""
    config = parse(PROVIDERS)
    stage = RouterStage(config.routing)
    stage.attach(ByWord())
    exchange = Exchange(build_runtime(config, stage))
    request_headers = {":path": "/v1/messages", ":method": "POST", **(headers or {})}
    exchange.on_request_headers(request_headers, False)
    reply = ProcessingResponse.parse(await exchange.on_request_body(orjson.dumps(body)))
    return orjson.loads(reply.request_body.response.body_mutation.body)


def test_adaptive_thinking_gets_the_effort_in_output_config():
    body = captured("first-turn")["body"]
    assert with_effort(body, "low") == {**body, "output_config": {"effort": "low"}}


@pytest.mark.parametrize(
    ("effort", "max_tokens", "budget"),
    [("low", 32000, 2048), ("medium", 32000, 8192), ("high", 32000, 16384), ("high", 9000, 8999)],
)
def test_a_thinking_budget_is_set_for_the_effort_below_max_tokens(effort, max_tokens, budget):
    body = {**captured("thinking-enabled")["body"], "max_tokens": max_tokens}
    assert with_effort(body, effort)["thinking"] == {"type": "enabled", "budget_tokens": budget}


def test_a_request_without_thinking_is_left_alone():
    assert with_effort(captured("subagent")["body"], "high") is None  # thinking: disabled
    assert with_effort({"messages": []}, "high") is None
    tiny = {"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 1024}
    assert with_effort(tiny, "low") is None, "no budget of at least 1024 fits"


async def test_two_routes_share_one_model_with_different_efforts():
    quick = await upstream_body(thinking_turn("quick fixes: rename x"))
    design = await upstream_body(thinking_turn("design: a plugin system"))
    assert quick["model"] == design["model"] == "claude-opus-4-8"
    assert (quick["output_config"], design["output_config"]) == (
        {"effort": "low"},
        {"effort": "high"},
    )
    assert quick["thinking"] == {"type": "adaptive"}


async def test_the_routed_model_replaces_the_asked_one_beside_the_effort():
    asked = {**thinking_turn("quick fixes: rename x"), "model": "claude-sonnet-4-5"}
    sent = await upstream_body(asked)
    assert sent == {**thinking_turn("quick fixes: rename x"), "output_config": {"effort": "low"}}


async def test_chat_completions_gets_reasoning_effort():
    sent = await upstream_body(thinking_turn("hello"), {"x-to": "chat"})
    assert sent["reasoning_effort"] == "low" and "reasoning" not in sent


async def test_the_responses_api_gets_reasoning_effort():
    sent = await upstream_body(thinking_turn("hello"), {"x-to": "responses"})
    assert sent["reasoning"]["effort"] == "low" and "reasoning_effort" not in sent


async def test_without_an_effort_the_clients_own_goes_on():
    sent = await upstream_body(thinking_turn("hello"), {"x-to": "plain"})
    assert "reasoning_effort" not in sent, "gpt-4.1 does not reason"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "  - {name: a, model: openai/gpt-4.1, reasoning_effort: low, when: {kind: title}}\n",
            "config.yaml:15: rules[3].reasoning_effort: openai/gpt-4.1 takes no reasoning effort"
            " (its model family has reasoning: false; set `reasoning: true` on the provider if "
            "it does)",
        ),
        (
            "  - {name: a, model: openai/o4-mini, reasoning_effort: max, when: {kind: title}}\n",
            "config.yaml:15: rules[3].reasoning_effort: 'max' is not one of low, medium, high",
        ),
    ],
)
def test_check_refuses_an_effort_the_model_cant_take(line, expected):
    with pytest.raises(ConfigError) as refused:
        parse(PROVIDERS + line, "config.yaml")
    assert [str(p) for p in refused.value.problems] == [expected]


def test_check_refuses_an_effort_on_a_route_of_a_model_without_reasoning():
    text = PROVIDERS.replace(
        "  - {model: openai/gpt-4.1, access_key: k}\n",
        "  - model: openai/gpt-4.1\n    access_key: k\n"
        "    routing_preferences: [{name: docs, description: docs, reasoning_effort: low}]\n",
    )
    with pytest.raises(ConfigError) as refused:
        parse(text, "config.yaml")
    [problem] = refused.value.problems
    assert (problem.line, problem.where) == (
        12,
        "llm_providers[3].routing_preferences[0].reasoning_effort",
    )


async def test_a_translated_chain_heads_body_carries_the_effort():
    """With failover o4-mini heads a chain (the default after it): its translation, in the
    decision's metadata for the Lua filter that puts it in place, has the rule's effort."""
    config = parse(PROVIDERS.replace("listener: {failover: false}\n", ""))
    exchange = Exchange(build_runtime(config, RouterStage(config.routing)))
    headers = {":path": "/v1/messages", ":method": "POST", "x-to": "chat"}
    exchange.on_request_headers(headers, False)
    body = orjson.dumps(thinking_turn("rename x"))
    reply = ProcessingResponse.parse(await exchange.on_request_body(body))
    decided = reply.dynamic_metadata.to_dict()["envoy.filters.http.ext_proc"]
    assert decided["chain"].startswith("p__")
    assert orjson.loads(decided["head_body"])["reasoning_effort"] == "low"
