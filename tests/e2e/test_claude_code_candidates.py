"""The real Claude Code (npm, pinned) through `extproc claude`, in sessions that outgrow the
model they were routed to, or whose provider fails mid tool loop: the gateway moves them on
to a candidate that can take them."""

from __future__ import annotations

import pytest

from tests.support.claude_code import CLAUDE_BIN, USER_KEY, claude, decisions
from tests.support.fake_openai import GROW_CALLS
from tests.support.gateway import PROVIDER_KEYS, running_gateway

WINDOW = 45_000
"""gpt-4.1's window here: Claude Code's first request (~25k estimated tokens) and the next
one fit; a few `cat` results of 20,000 characters later, the session doesn't."""
BIG_FILE_CHARS = 20_000
"""Under Claude Code's 30,000-character cap on a Bash result, so all of it is sent."""


@pytest.fixture(scope="module")
def window_gateway(fake_anthropic, fake_openai, tmp_path_factory):
    """Every Claude model is an alias of gpt-4.1 (OpenAI-format fake, 45k window, 1k output
    cap); the default, Claude Sonnet on the Anthropic fake with the user's own key, is its
    only fallback. No cooldowns: each test starts with gpt-4.1 serving."""
    if not (CLAUDE_BIN / "claude").exists():
        pytest.fail("Claude Code is not installed: run `npm ci` in the project root")

    def config_for(ports: dict[str, int]) -> str:
        return f"""\
listener: {{port: {ports["listener"]}, admin_port: {ports["admin"]}, cooldown_max_s: 0}}
sidecar: {{port: {ports["sidecar"]}, health_port: {ports["health"]}}}
llm_providers:
  - model: openai/gpt-4.1
    base_url: {fake_openai.url}/v1
    provider_interface: openai-chat
    access_key: $TEST_OPENAI_KEY
    context_window: {WINDOW}
    max_tokens: 1000
  - model: anthropic/claude-sonnet-4-5
    base_url: {fake_anthropic.url}
    default: true
model_aliases:
  claude-*: openai/gpt-4.1
"""

    with running_gateway(config_for, tmp_path_factory.mktemp("window-gateway")) as gateway:
        yield gateway


def test_a_session_that_outgrows_its_window_goes_on_with_the_fallback(
    window_gateway, fakes, tmp_path
):
    anthropic_fake, _, openai_fake = fakes
    project = tmp_path / "project"
    project.mkdir()
    (project / "big.txt").write_text(("0123456789abcdefghi\n" * BIG_FILE_CHARS)[:BIG_FILE_CHARS])

    result = claude(
        window_gateway, tmp_path, "-p", "please GROW the session", "--allowedTools", "Bash(cat:*)"
    )

    assert result.returncode == 0, result.stderr
    # The fallback answered the turn the session outgrew gpt-4.1 on, and so ended the loop.
    assert result.stdout.strip() == anthropic_fake.answer
    grown = [r for r in openai_fake.received if "GROW" in r.body.decode()]
    moved = [r for r in anthropic_fake.received if r.method == "POST" and b"GROW" in r.body]
    # gpt-4.1 served the start of the session and some of its tool loop, not all of it.
    assert 2 <= len(grown) < GROW_CALLS + 1
    assert len(moved) == 1
    first, *_ = decisions(window_gateway, moved)
    assert first["routed_model"] == "anthropic/claude-sonnet-4-5"
    assert first["note"].startswith("openai/gpt-4.1 skipped: ~")
    assert first["note"].endswith(" input tokens + 1k max_tokens > 45k window")
    # Every result gpt-4.1 was sent reached the fallback too, with the user's own key only.
    assert moved[0].body.count(b"0123456789abcdefghi") >= len(grown) * (BIG_FILE_CHARS // 20)
    assert moved[0].headers["x-api-key"] == USER_KEY


@pytest.mark.parametrize("failure", ["429", "refused"])
def test_a_provider_outage_mid_tool_loop_is_served_by_the_next_candidate(
    window_gateway, fakes, tmp_path, failure
):
    """gpt-4.1 answers the session's first turn with a tool call, then fails (429, or it
    refuses connections): the turn carrying the tool's result is served by the fallback."""
    anthropic_fake, _, openai_fake = fakes
    openai_fake.failure, openai_fake.answered_first = failure, 1
    try:
        result = claude(
            window_gateway,
            tmp_path,
            "-p",
            "please TOOL echo something",
            "--allowedTools",
            "Bash(echo:*)",
        )
    finally:
        if failure == "refused":
            openai_fake.start()
        openai_fake.failure, openai_fake.answered_first = None, 0

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == anthropic_fake.answer
    # gpt-4.1 asked for the tool; the turn carrying its result went to the fallback.
    [tool_turn] = [r for r in anthropic_fake.received if "hello ünïcode" in r.body.decode()]
    assert tool_turn.headers["x-api-key"] == USER_KEY
    assert PROVIDER_KEYS["TEST_OPENAI_KEY"] not in str(tool_turn.headers)
