"""The `rules:` section: what it becomes, and each mistake `extproc check` refuses with file:line."""

from __future__ import annotations

import pytest

from extproc.config import ConfigError, parse
from extproc.config.rules import When

PROVIDERS = """\
llm_providers:
  - model: anthropic/claude-sonnet-4-5
    default: true
    routing_preferences: [{name: code review, description: reviewing code}]
  - model: gemini/gemini-2.5-flash
    name: cheap
    access_key: k
"""


def rules(text: str):
    return parse(PROVIDERS + "rules:\n" + text).rules


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(PROVIDERS + "rules:\n" + text, "config.yaml")
    return [str(p) for p in caught.value.problems]


def two_rules(earlier: str, later: str) -> str:
    return (
        f"  - {{name: first, model: cheap, when: {earlier}}}\n"
        f"  - {{name: second, model: cheap, when: {later}}}\n"
    )


def test_each_condition_is_read():
    [rule] = rules(
        """\
  - name: everything
    model: cheap
    when:
      kind: [compact, subagent]
      images: false
      min_input_tokens: 100000
      thinking: true
      tools: mcp__*
      header: {X-Team: 'infra-*'}
"""
    )
    assert rule.name == "everything" and rule.provider.model == "gemini/gemini-2.5-flash"
    assert rule.when == When(
        kinds=("compact", "subagent"),
        images=False,
        min_input_tokens=100000,
        thinking=True,
        tools="mcp__*",
        headers=(("x-team", "infra-*"),),
    )


def test_a_model_by_its_full_name_and_one_kind_as_a_string():
    [rule] = rules("  - {name: titles, model: gemini/gemini-2.5-flash, when: {kind: title}}\n")
    assert (rule.provider.name, rule.when.kinds) == ("cheap", ("title",))


def test_rule_headers_are_what_envoy_forwards():
    config = parse(
        PROVIDERS
        + "rules:\n  - {name: a, model: cheap, when: {header: {X-Team: x, x-b: y}}}\n"
        + "  - {name: b, model: cheap, when: {header: {x-team: z}}}\n"
    )
    assert config.rule_headers == ("x-b", "x-team")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "  - {name: a, model: cheap, when: {colour: red}}\n",
            "config.yaml:9: rules[0].when.colour: unknown key (known: header, images, kind, "
            "min_input_tokens, subagent, thinking, tools)",
        ),
        (
            "  - {name: a, model: cheap, when: {kind: [main, background]}}\n",
            "config.yaml:9: rules[0].when.kind: 'background' is not a kind (main, tool_result, "
            "subagent, compact, title, web_search)",
        ),
        (
            "  - {name: a, model: openai/gpt-5, when: {kind: title}}\n",
            "config.yaml:9: rules[0].model: 'openai/gpt-5' is not a configured model "
            "(anthropic/claude-sonnet-4-5, cheap, gemini/gemini-2.5-flash)",
        ),
        (
            "  - {name: a, model: cheap, when: {images: yes please}}\n",
            "config.yaml:9: rules[0].when.images: expected true or false, got 'yes please'",
        ),
        (
            "  - {name: a, model: cheap, when: {header: {x-api-key: 'sk-*'}}}\n",
            "config.yaml:9: rules[0].when.header.x-api-key: rules can't read credentials "
            "(the sidecar never sees them)",
        ),
        (
            "  - {name: code review, model: cheap, when: {kind: title}}\n",
            "config.yaml:9: rules[0].name: 'code review' is a route's name; give the rule its own",
        ),
    ],
)
def test_each_mistake_is_one_line_with_file_and_line(text, expected):
    assert problems(text) == [expected]


def test_a_subagent_name_is_refused_saying_what_to_write_instead():
    [problem] = problems("  - {name: a, model: cheap, when: {subagent: 'review*'}}\n")
    assert problem.startswith("config.yaml:9: rules[0].when.subagent: Claude Code (2.1.197)")
    assert "`kind: subagent`" in problem and ".claude/agents/*.md" in problem


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ("{kind: [compact, subagent]}", "{kind: compact, images: true}"),
        ("{}", "{kind: title}"),
        ("{min_input_tokens: 1000}", "{min_input_tokens: 5000, thinking: true}"),
        ("{header: {x-team: a}}", "{header: {x-team: a, x-other: b}, tools: 'Bash'}"),
    ],
)
def test_a_rule_an_earlier_one_always_takes_is_refused(earlier, later):
    assert problems(two_rules(earlier, later)) == [
        "config.yaml:10: rules[1].when: no request can reach this rule: rules[0] holds for "
        "every request it holds for, and comes first"
    ]


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ("{kind: compact}", "{kind: [compact, subagent]}"),
        ("{images: true}", "{images: false}"),
        ("{min_input_tokens: 5000}", "{min_input_tokens: 1000}"),
        ("{tools: 'mcp__*'}", "{tools: 'Bash'}"),
        ("{kind: compact, thinking: true}", "{kind: compact}"),
    ],
)
def test_a_narrower_rule_first_leaves_the_later_one_reachable(earlier, later):
    assert [rule.name for rule in rules(two_rules(earlier, later))] == ["first", "second"]
