"""The price table and `price:` on a provider entry: what each answer's tokens cost."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from extproc.config import ConfigError, parse
from extproc.config.catalogue import CATALOGUE
from extproc.config.contract import FAMILIES
from extproc.config.prices import PRICES, Price, price_for
from extproc.translate.openai_chat.response import anthropic_usage as openai_chat_usage


def test_every_provider_and_family_the_gateway_knows_has_a_row():
    """A family whose price was not found says so (None): nothing falls through unseen."""
    for kind in CATALOGUE:
        assert any(row.provider == kind for row in PRICES), kind
    for family in FAMILIES:
        assert any(row.matches(family.provider, family.model) for row in PRICES), family


def test_every_row_has_a_price_with_its_source_and_date_or_none():
    """A price names where it was read (a provider's page, or the price files that agree
    on it) and when; anything else is None."""
    for row in PRICES:
        if row.price is not None:
            assert row.price.source.startswith(
                ("https://", "runs locally", "LiteLLM 1.110.2 model_prices")
            ), row
            assert "genai-prices" in row.price.source or "LiteLLM" not in row.price.source
            assert re.fullmatch(r"\d{4}-\d\d-\d\d", row.price.date), row


def test_no_row_is_hidden_by_a_row_above_it():
    """The first matching row applies: a general glob above a specific one would take its
    models."""
    for i, row in enumerate(PRICES):
        for above in PRICES[:i]:
            assert not above.matches(row.provider, row.model), (above, row)


def test_cache_reads_and_writes_are_priced_apart_from_input():
    """claude-sonnet-4-5 ($3 in, $15 out, $0.30 a cache read, $3.75 a cache write):
    (1,000 × 3 + 500 × 15 + 20,000 × 0.30 + 3,000 × 3.75) / 10⁶ = $0.02775."""
    price = price_for("anthropic", "claude-sonnet-4-5-20250929")
    usage = {
        "input_tokens": 1000,
        "output_tokens": 500,
        "cache_read_input_tokens": 20000,
        "cache_creation_input_tokens": 3000,
    }
    assert price is not None and price.cost(usage) == pytest.approx(0.02775, abs=1e-12)


def test_unknown_families_have_no_price():
    # The two price files differ on these, or only one of them lists it.
    assert price_for("mistral", "mistral-large-latest") is None
    assert price_for("xai", "grok-code-fast-1") is None
    assert price_for("xai", "grok-4") is None
    assert price_for("moonshot", "kimi-k2-thinking") is None
    assert price_for("groq", "llama-3.3-70b-versatile") is None
    # An alias that moves to newer models; a model newer than the table.
    assert price_for("gemini", "gemini-flash-latest") is None
    assert price_for("openai", "gpt-5.7") is None
    assert price_for("openai", "gpt-5.3-pro") is None
    assert price_for("openrouter", "openai/gpt-4.1") is None
    assert price_for("anthropic", "claude-3-opus") is None
    assert price_for("my-own-provider", "x") is None


@pytest.mark.parametrize(
    ("kind", "model", "price"),
    [
        ("openai", "gpt-4.1-2025-04-14", (2, 8, 0.5, 2)),
        ("openai", "gpt-4.1-mini", (0.4, 1.6, 0.1, 0.4)),
        ("openai", "gpt-5", (1.25, 10, 0.125, 1.25)),
        ("openai", "gpt-5-codex", (1.25, 10, 0.125, 1.25)),
        ("openai", "gpt-5-mini", (0.25, 2, 0.025, 0.25)),
        ("openai", "gpt-5.1-codex-max", (1.25, 10, 0.125, 1.25)),
        ("openai", "gpt-5.2-codex", (1.75, 14, 0.175, 1.75)),
        ("openai", "gpt-5.2-pro", (21, 168, 21, 21)),
        ("openai", "gpt-5.5", (5, 30, 0.5, 5)),
        ("openai", "gpt-5.6-terra", (2, 12, 0.2, 2.5)),
        ("openai", "o3", (2, 8, 0.5, 2)),
        ("openai", "o3-mini", (1.1, 4.4, 0.55, 1.1)),
        ("openai", "o4-mini", (1.1, 4.4, 0.275, 1.1)),
        ("gemini", "gemini-2.5-pro", (1.25, 10, 0.125, 1.25)),
        ("gemini", "gemini-2.5-flash", (0.3, 2.5, 0.03, 0.3)),
        ("gemini", "gemini-3-pro-preview", (2, 12, 0.2, 2)),
        ("xai", "grok-4.6", (2, 6, 0.5, 2)),
        ("xai", "grok-4.5", (2, 6, 0.3, 2)),
        ("mistral", "codestral-2508", (0.3, 0.9, 0.03, 0.3)),
        ("groq", "openai/gpt-oss-120b", (0.15, 0.6, 0.075, 0.15)),
        ("moonshot", "kimi-k2.6", (0.95, 4, 0.16, 0.95)),
    ],
)
def test_the_models_in_the_examples_have_their_price(kind, model, price):
    """Input, output, cache read, cache write: where the provider charges nothing for
    writing its cache, a write costs what input does."""
    found = price_for(kind, model)
    assert found is not None
    assert (found.input, found.output, found.cache_read, found.cache_write) == price


def test_an_openai_answer_pays_for_a_cached_token_once():
    """Chat Completions counts 1,000 prompt tokens, 800 of them cached, and 100 out; the
    translation counts 200 input and 800 cache reads. gpt-4.1 ($2 in, $0.50 cached, $8 out):
    (200 × 2 + 800 × 0.5 + 100 × 8) / 10⁶ = $0.0016."""
    usage = openai_chat_usage(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 100,
            "prompt_tokens_details": {"cached_tokens": 800},
        }
    )
    price = price_for("openai", "gpt-4.1")
    assert price is not None and price.cost(usage) == pytest.approx(0.0016, abs=1e-12)


def providers(entries: str) -> dict:
    config = parse("llm_providers:\n" + textwrap.indent(textwrap.dedent(entries), "  "))
    return {p.model: p.price for p in config.providers}


def test_an_entrys_price_replaces_the_table():
    prices = providers(
        """\
        - model: anthropic/claude-sonnet-4-5
          price: {input: 2.5, output: 12, cache_read: 0.25, cache_write: 3}
        - model: openai/gpt-4.1
          price: {input: 2, output: 8}
        - model: anthropic/claude-haiku-4-5
        """
    )
    assert prices["anthropic/claude-sonnet-4-5"] == Price(2.5, 12, 0.25, 3, "config.yaml")
    # No cache prices given: cached tokens cost what input does.
    assert prices["openai/gpt-4.1"] == Price(2, 8, 2, 2, "config.yaml")
    assert prices["anthropic/claude-haiku-4-5"] == price_for("anthropic", "claude-haiku-4-5")


def test_price_mistakes_are_reported_with_their_line():
    text = textwrap.dedent(
        """\
        llm_providers:
          - model: openai/gpt-4.1
            price: {input: -1, output: cheap, per_request: 1}
          - model: xai/grok-4
            price:
              output: 3
          - model: gemini/gemini-2.5-pro
            price: 2
        """
    )
    with pytest.raises(ConfigError) as raised:
        parse(text, "config.yaml")
    assert [str(p) for p in raised.value.problems] == [
        "config.yaml:3: llm_providers[0].price.per_request: unknown key "
        "(known: cache_read, cache_write, input, output)",
        "config.yaml:3: llm_providers[0].price.input: -1 is out of range: must not be negative",
        "config.yaml:3: llm_providers[0].price.output: expected USD per million tokens, "
        "got 'cheap'",
        "config.yaml:6: llm_providers[1].price: missing `input` (USD per million tokens)",
        "config.yaml:8: llm_providers[2].price: expected a mapping, got int",
    ]


def documented_prices() -> list[tuple[str, str, tuple[float, ...]]]:
    """docs/translation.md's price table: provider, model glob, the four prices, for each
    glob of each row that has a price."""
    text = (Path(__file__).parents[3] / "docs" / "translation.md").read_text(encoding="utf-8")
    table = text.split("| provider | models | input | output | cache read | cache write |")[1]
    rows = []
    for line in table.split("\n\n")[0].splitlines()[2:]:
        provider, models, *prices = [cell.strip() for cell in line.strip("|").split("|")][:6]
        if prices[0] == "unknown":
            continue
        for glob in re.findall(r"`([^`]+)`", models) or ["*"]:
            rows.append((provider, glob, tuple(float(p) for p in prices)))
    return rows


def models_of(glob: str) -> list[str]:
    """Model names a glob names: each character of a `[...]` set, a `*` as nothing or as a
    dated suffix."""
    models = [""]
    for part in re.findall(r"\[[^]]+\]|\*|[^[*]+", glob):
        if part == "*":
            choices = ["", "-20260101"]
        elif part.startswith("["):
            first, _, last = part[1:-1].partition("-")  # [45] or [5-8]
            choices = [chr(c) for c in range(ord(first), ord(last) + 1)] if last else list(first)
        else:
            choices = [part]
        models = [model + choice for model in models for choice in choices]
    return models


def test_every_documented_price_is_the_one_charged():
    """Each row of docs/translation.md's table, for every model its globs name: the price
    `cost_usd` is counted with. Every row of the table that has a price is documented."""
    charged_rows = set()
    for provider, glob, prices in documented_prices():
        for model in models_of(glob):
            row = next(row for row in PRICES if row.matches(provider, model))
            assert row.price is not None, (provider, model)
            charged = (
                row.price.input,
                row.price.output,
                row.price.cache_read,
                row.price.cache_write,
            )
            assert charged == prices, (provider, model)
            charged_rows.add(row)
    assert charged_rows == {row for row in PRICES if row.price is not None}


def test_an_answer_without_some_counts_pays_for_those_it_has():
    """claude-sonnet-4-5, 1,000 in and 500 out, no cache counts: (3,000 + 7,500) / 10⁶."""
    price = price_for("anthropic", "claude-sonnet-4-5")
    assert price is not None
    assert price.cost({"input_tokens": 1000, "output_tokens": 500}) == 0.0105
    assert price.cost({"output_tokens": 500}) == 0.0075
    assert price.cost({"cache_read_input_tokens": 1000}) == 0.0003
    assert price.cost({"cache_creation_input_tokens": 1000}) == 0.00375
    assert price.cost({}) == 0
