"""The real Claude Code, interactive in tmux, run by `extproc claude`: its status line shows
the gateway's decision for the session, follows it when a later turn goes elsewhere, and
shows the session's cost of answers that only Envoy reads."""

from __future__ import annotations

import re

import pytest

from tests.support.claude_code import CLAUDE_BIN, Terminal, claude_gateway_config
from tests.support.gateway import running_gateway
from tests.support.tiny_model import ROUTES

BIG = 40_000
"""Input tokens from which the `big pastes` rule decides: Claude Code's first turn is about
30,000 by the rules' estimate (its system prompt and tools), a 60 KB paste brings it past."""


@pytest.fixture(scope="module")
def statusline_gateway(fake_anthropic, fake_openai, tiny_router_dir, tmp_path_factory):
    """Every route leads to the OpenAI-format fake; a big paste goes to Claude on the
    Anthropic fake, by a rule. Every key is the gateway's."""
    if not (CLAUDE_BIN / "claude").exists():
        pytest.fail("Claude Code is not installed: run `npm ci` in the project root")

    def config_for(ports: dict[str, int]) -> str:
        big = f"{{name: big pastes, model: anthropic/claude-sonnet-4-5, when: {{min_input_tokens: {BIG}}}}}"
        return claude_gateway_config(
            fake_anthropic, fake_openai, tiny_router_dir, ports, "$TEST_ANTHROPIC_KEY", big
        )

    with running_gateway(config_for, tmp_path_factory.mktemp("statusline-gateway")) as gateway:
        yield gateway


def status_line(screen: str) -> str:
    """The status line: the one line of the screen that starts with the routed model, up to
    the badges Claude Code shows at its right end."""
    [line] = [line.strip() for line in screen.splitlines() if line.strip().startswith("→ ")]
    return re.split(r"\s{3,}", line)[0]


def test_the_status_line_shows_the_routed_model_and_follows_a_later_turn(
    statusline_gateway, fakes, tmp_path
):
    terminal = Terminal(statusline_gateway, tmp_path)
    try:
        terminal.wait_for("extproc: no routed request yet in this session")
        terminal.type("hello there")
        # Each answer is priced in Envoy (usage.lua: gpt-4.1's translated on its failover
        # chain, Claude's native), which reports it to the sidecar: a fraction of a cent.
        first = status_line(terminal.wait_for(" ms · <$0.01 this session"))
        route = first.removeprefix("→ gpt-4.1 · ").split(" · ")[0]
        assert route in dict(ROUTES), first
        assert re.fullmatch(
            rf"→ gpt-4\.1 · {route} · router \d+ ms · <\$0\.01 this session", first
        ), first

        terminal.paste("the quick brown fox jumps over the lazy dog " * 1400)
        later = status_line(terminal.wait_for("→ claude-sonnet-4-5 · big pastes · "))
        assert later == "→ claude-sonnet-4-5 · big pastes · <$0.01 this session"
    finally:
        terminal.close()
    statusline_gateway.wait_log(lambda e: e.get("source") == "rule")
    main_turns = [
        e for e in statusline_gateway.log_lines() if e.get("source") in ("router", "rule")
    ]
    assert [(e["source"], e["routed_model"]) for e in main_turns] == [
        ("router", "openai/gpt-4.1"),
        ("rule", "anthropic/claude-sonnet-4-5"),
    ]


def test_turned_off_no_status_line_shows(statusline_gateway, fakes, tmp_path):
    terminal = Terminal(statusline_gateway, tmp_path, "--no-statusline")
    try:
        terminal.type("hello there")
        screen = terminal.wait_for("Hello from the OpenAI-format fake")
    finally:
        terminal.close()
    assert "→ gpt-4.1" not in screen and "extproc:" not in screen
