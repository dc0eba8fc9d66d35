"""Request kinds, images, thinking and tool names, read from requests captured from Claude Code
2.1.197 (tests/fixtures/claude-code/, docs/router.md#request-kinds)."""

from __future__ import annotations

import pytest

from extproc.decisions import kinds
from extproc.proxy.exchange import _parse_body
from tests.support.captured import captured, wire_body

FIXTURE_KINDS = {
    "first-turn": "main",
    "interactive-main": "main",
    "image": "main",
    "thinking-enabled": "main",
    "tool-loop": "tool_result",
    "subagent-result": "tool_result",
    "subagent": "subagent",
    "subagent-custom": "subagent",
    "subagent-explore": "subagent",
    "compact": "compact",
    "interactive-title": "title",
    "title": "title",
    "web-search": "web_search",
}


def routing_view(name: str) -> dict:
    """The body as the sidecar reads it: only the routing fields, tools by type and name."""
    body, _ = _parse_body(wire_body(captured(name)["body"]))
    return body


@pytest.mark.parametrize("name", FIXTURE_KINDS)
def test_each_captured_request_has_its_kind(name):
    assert kinds.request_kind(routing_view(name)) == FIXTURE_KINDS[name]
    assert kinds.request_kind(captured(name)["body"]) == FIXTURE_KINDS[name]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"messages": "not a list", "system": 7, "tools": "x", "output_config": []},
        {"messages": [None, {"role": "user", "content": 3}], "system": [None]},
        {"messages": [{"role": "user", "content": [{"type": "tool_result"}]}], "system": "x"},
    ],
)
def test_an_unknown_shape_is_a_main_turn_or_its_plain_signal(body):
    expected = "tool_result" if body.get("system") == "x" else "main"
    assert kinds.request_kind(body) == expected


def test_images_anywhere_in_the_conversation_tool_results_included():
    assert kinds.has_images(routing_view("image"))
    assert not any(kinds.has_images(routing_view(n)) for n in FIXTURE_KINDS if n != "image")
    screenshot = {"type": "image", "source": {"type": "base64", "media_type": "image/png"}}
    result = {"type": "tool_result", "tool_use_id": "t", "content": [screenshot]}
    assert kinds.has_images({"messages": [{"role": "user", "content": [result]}]})


def test_thinking_is_on_for_main_turns_and_off_for_side_calls():
    on = {n for n in FIXTURE_KINDS if kinds.asks_thinking(routing_view(n))}
    assert on == {
        "first-turn",
        "interactive-main",
        "image",
        "thinking-enabled",
        "tool-loop",
        "subagent-result",
        "compact",
    }
    assert captured("thinking-enabled")["body"]["thinking"] == {
        "budget_tokens": 31999,
        "type": "enabled",
    }


def test_tool_names_as_the_sidecar_reads_them():
    assert kinds.tool_names(routing_view("subagent-custom")) == ["Read", "Grep"]
    assert kinds.tool_names(routing_view("web-search")) == ["web_search"]
    assert kinds.tool_names({"tools": [{"type": "custom"}, {"name": "Bash"}]}) == ["Bash"]


def test_a_system_prompt_the_sidecar_cannot_read_is_a_main_turn():
    body, _ = _parse_body(b'{"model": "m", "messages": [], "system": "\xff", "thinking": "\xff"}')
    assert kinds.request_kind(body) == "main" and not kinds.asks_thinking(body)


def test_a_turn_that_offers_web_search_among_other_tools_is_not_a_web_search():
    server_tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
    body = {"messages": [], "tools": [{"name": "Bash"}, server_tool]}
    assert kinds.request_kind(body) == "main"
    assert kinds.request_kind({**body, "tools": [server_tool]}) == "web_search"
