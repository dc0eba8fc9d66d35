"""Rules through the real Envoy and sidecar: each condition sends its request to the rule's
model, before the (tiny, real) router; a request no rule holds for is routed as before."""

from __future__ import annotations

import httpx
import pytest

from tests.support.captured import captured, wire_body
from tests.support.gateway import routed_gateway_config, running_gateway

RULES = """\
rules:
  - {name: compaction, model: anthropic/claude-haiku-4-5, when: {kind: compact}}
  - {name: subagents, model: anthropic/claude-haiku-4-5, when: {kind: subagent}}
  - {name: screenshots, model: anthropic/claude-haiku-4-5, when: {images: true}}
  - {name: team, model: anthropic/claude-haiku-4-5, when: {header: {X-Team: 'infra-*'}}}
  - {name: github, model: anthropic/claude-haiku-4-5, when: {tools: 'mcp__github__*'}}
  - {name: long, model: anthropic/claude-haiku-4-5, when: {min_input_tokens: 20000}}
  - {name: thinking, model: anthropic/claude-haiku-4-5, when: {thinking: true}}
"""


@pytest.fixture(scope="module")
def rules_gateway(fake_anthropic, fake_deepseek, tiny_router_dir, tmp_path_factory):
    def config_for(ports: dict[str, int]) -> str:
        return (
            routed_gateway_config(fake_anthropic, fake_deepseek, tiny_router_dir, **ports) + RULES
        )

    with running_gateway(config_for, tmp_path_factory.mktemp("rules-gateway")) as gateway:
        yield gateway


def turn(text: str, **fields) -> dict:
    body = {"model": "claude-opus-4-8", "max_tokens": 64, "stream": True}
    return {**body, "messages": [{"role": "user", "content": text}], **fields}


MCP_TOOL = {"name": "mcp__github__create_issue", "input_schema": {"type": "object"}}
CASES = {
    "compaction": (captured("compact")["body"], {}),
    "subagents": (captured("subagent")["body"], {}),
    "screenshots": (captured("image")["body"], {}),
    "team": (turn("write a function"), {"X-Team": "infra-eu"}),
    "github": (turn("write a function", tools=[MCP_TOOL]), {}),
    "long": (turn("write a function " + "x" * 80_000), {}),
    "thinking": (turn("write a function", thinking={"type": "enabled", "budget_tokens": 2048}), {}),
}


def post(gateway, body: dict, headers: dict[str, str]) -> httpx.Response:
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01", **headers}
    url = f"{gateway.url}/v1/messages?beta=true"
    return httpx.post(url, content=wire_body(body), headers=headers, timeout=30)


@pytest.mark.parametrize("rule", CASES)
def test_each_condition_sends_its_request_to_the_rules_model(rules_gateway, fakes, rule):
    anthropic, _, _ = fakes
    body, headers = CASES[rule]
    response = post(rules_gateway, body, headers)
    assert response.status_code == 200, response.text
    [seen] = [r for r in anthropic.received if r.method == "POST"]
    assert seen.json()["model"] == "claude-haiku-4-5"
    entry = rules_gateway.wait_log(lambda e: e.get("request_id") == seen.headers["x-request-id"])
    assert (entry["source"], entry["route"], entry["routed_model"]) == (
        "rule",
        rule,
        "anthropic/claude-haiku-4-5",
    )


def test_a_request_no_rule_holds_for_goes_to_the_router(rules_gateway, fakes):
    anthropic, deepseek, _ = fakes
    response = post(rules_gateway, turn("review this code for bugs please"), {"X-Team": "web"})
    assert response.status_code == 200, response.text
    received = [r for r in (*anthropic.received, *deepseek.received) if r.method == "POST"]
    [seen] = received
    entry = rules_gateway.wait_log(lambda e: e.get("request_id") == seen.headers["x-request-id"])
    assert entry["source"] == "router" and entry["route"] not in {*CASES, ""}
