"""The environment `extproc claude` gives Claude Code, case by case (README, step 3), decided
from the config as loaded; test_launch.py has the running gateway decide."""

from __future__ import annotations

import pytest

from extproc.commands.launch import PLACEHOLDER_TOKEN, LaunchError, claude_environment
from extproc.config import parse

KEYED = "  - model: anthropic/claude-sonnet-4-5\n    access_key: sk-gw\n"
PASSES_THROUGH = "  - model: anthropic/claude-sonnet-4-5\n"
OPENAI = "  - model: openai/gpt-4.1\n    access_key: sk-gw\n"
HAIKU = "  - model: anthropic/claude-haiku-4-5\n    access_key: sk-gw\n"
HAIKU_ALIAS = "model_aliases:\n  claude-*haiku*: anthropic/claude-haiku-4-5\n"


def environment(config_text: str, environ: dict[str, str]) -> dict[str, str]:
    config = parse(config_text)
    return claude_environment(config, environ)


def added(config_text: str, environ: dict[str, str]) -> dict[str, str]:
    """What `extproc claude` adds to or changes in `environ`."""
    env = environment(config_text, environ)
    assert {k: env[k] for k in environ} == environ, "the user's own variables are kept"
    return {k: v for k, v in env.items() if k not in environ}


def test_the_base_url_and_a_long_timeout():
    config = "listener: {port: 12345}\nllm_providers:\n" + KEYED
    assert added(config, {"PATH": "/bin", "ANTHROPIC_API_KEY": "sk-ant-me"}) == {
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:12345",
        "API_TIMEOUT_MS": "600000",
    }


def test_a_listener_on_every_address_is_reached_on_loopback():
    config = "listener: {address: 0.0.0.0, port: 12000}\nllm_providers:\n" + KEYED
    assert environment(config, {})["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:12000"


def test_the_users_own_timeout_is_kept():
    env = environment("llm_providers:\n" + KEYED, {"API_TIMEOUT_MS": "5000"})
    assert env["API_TIMEOUT_MS"] == "5000"


@pytest.mark.parametrize(
    ("providers", "environ", "token"),
    [
        # Every key in the gateway, none of the user's: a placeholder spares the login.
        (KEYED + OPENAI, {}, PLACEHOLDER_TOKEN),
        # An entry passes the user's own credentials through: Claude Code must log in.
        (PASSES_THROUGH + OPENAI, {}, None),
        # The user has credentials: they are used as they are.
        (KEYED, {"ANTHROPIC_API_KEY": "sk-ant-me"}, None),
        (KEYED, {"ANTHROPIC_AUTH_TOKEN": "tok"}, "tok"),
    ],
    ids=["gateway holds every key", "pass-through entry", "user's api key", "user's token"],
)
def test_the_placeholder_token_only_when_the_gateway_holds_every_key(providers, environ, token):
    env = environment("llm_providers:\n" + providers, environ)
    assert env.get("ANTHROPIC_AUTH_TOKEN") == token


def test_gateway_keys_need_the_users_key():
    config = "gateway_keys: [gk-0123456789abcdef]\nllm_providers:\n" + KEYED
    with pytest.raises(LaunchError, match="set ANTHROPIC_AUTH_TOKEN to it"):
        environment(config, {})
    env = environment(config, {"ANTHROPIC_AUTH_TOKEN": "gk-0123456789abcdef"})
    assert env["ANTHROPIC_AUTH_TOKEN"] == "gk-0123456789abcdef"


def test_haiku_variables_name_the_alias_target():
    env = environment("llm_providers:\n" + KEYED + HAIKU + HAIKU_ALIAS, {})
    assert env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "anthropic/claude-haiku-4-5"
    assert env["ANTHROPIC_SMALL_FAST_MODEL"] == "anthropic/claude-haiku-4-5"


def test_no_haiku_variables_without_an_alias_for_haiku_names():
    aliases = "model_aliases:\n  deep: anthropic/claude-haiku-4-5\n"
    env = environment("llm_providers:\n" + KEYED + HAIKU + aliases, {})
    assert "ANTHROPIC_DEFAULT_HAIKU_MODEL" not in env
    assert "ANTHROPIC_SMALL_FAST_MODEL" not in env


def test_the_users_own_haiku_model_is_kept():
    mine = {"ANTHROPIC_DEFAULT_HAIKU_MODEL": "mine", "ANTHROPIC_SMALL_FAST_MODEL": "mine too"}
    env = environment("llm_providers:\n" + KEYED + HAIKU + HAIKU_ALIAS, mine)
    assert {k: env[k] for k in mine} == mine
