"""The price table and `price:` on a provider entry: what each answer's tokens cost."""

from __future__ import annotations

import re
import textwrap

import pytest

from extproc.config import ConfigError, parse
from extproc.config.catalogue import CATALOGUE
from extproc.config.contract import FAMILIES
from extproc.config.prices import PRICES, Price, price_for


def test_every_provider_and_family_the_gateway_knows_has_a_row():
    """A family whose price was not found says so (None): nothing falls through unseen."""
    for kind in CATALOGUE:
        assert any(row.provider == kind for row in PRICES), kind
    for family in FAMILIES:
        assert any(row.matches(family.provider, family.model) for row in PRICES), family


def test_every_known_price_says_where_and_when_it_was_read():
    for row in PRICES:
        if row.price is not None:
            assert row.price.source.startswith(("https://", "runs locally")), row
            assert re.fullmatch(r"\d{4}-\d\d-\d\d", row.price.date), row


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
    assert price_for("openai", "gpt-4.1") is None
    assert price_for("gemini", "gemini-2.5-pro") is None
    assert price_for("anthropic", "claude-3-opus") is None
    assert price_for("my-own-provider", "x") is None


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
