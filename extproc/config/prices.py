"""What each model family's tokens cost, kept as data, and the cost of one answer's usage.

`PRICES` holds one row per family the catalogue and the contract table know: the provider
kind and a model-name glob, and four prices in USD per million tokens (input, output, cache
reads, cache writes), each with the provider's own page it was read from and the date it
was read. The first row that matches a model applies. A family whose price was not found on
its provider's page has `price=None`: unknown, and its answers get no `cost_usd` (never a
guess). A `price:` on a provider entry in config.yaml replaces the row.
docs/translation.md#prices lists every row with its source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

PER_MILLION = 1_000_000


@dataclass(frozen=True)
class Price:
    """USD per million tokens. `cache_read` and `cache_write` price the tokens Anthropic's
    usage counts apart from `input_tokens` (cache_read_input_tokens,
    cache_creation_input_tokens); OpenAI-style answers are split the same way when translated
    (extproc.translate.anthropic_format.usage_counts)."""

    input: float
    output: float
    cache_read: float
    cache_write: float
    source: str = ""
    """Where the price was read: the provider's own pricing page, or `config.yaml`."""
    date: str = ""
    """When it was read (YYYY-MM-DD)."""

    def cost(self, usage: Mapping[str, int]) -> float:
        """USD for one answer's Anthropic-format usage counts."""
        return (
            usage.get("input_tokens", 0) * self.input
            + usage.get("output_tokens", 0) * self.output
            + usage.get("cache_read_input_tokens", 0) * self.cache_read
            + usage.get("cache_creation_input_tokens", 0) * self.cache_write
        ) / PER_MILLION


@dataclass(frozen=True)
class PriceRow:
    provider: str
    model: str
    price: Price | None
    """None: the provider's page was not found; unknown, not guessed."""

    def matches(self, kind: str, model: str) -> bool:
        return fnmatchcase(kind, self.provider) and fnmatchcase(model, self.model)


_ANTHROPIC = "https://platform.claude.com/docs/en/about-claude/pricing"
_DEEPSEEK = "https://api-docs.deepseek.com/quick_start/pricing"
_READ = "2026-12-07"

PRICES: tuple[PriceRow, ...] = (
    # Anthropic: cache writes at the 5-minute price (Claude Code marks its prompt
    # `ephemeral`, 5 minutes); a 1-hour write costs 2x input, more than this counts.
    PriceRow("anthropic", "claude-opus-4-[5-8]*", Price(5, 25, 0.5, 6.25, _ANTHROPIC, _READ)),
    PriceRow("anthropic", "claude-sonnet-4-5*", Price(3, 15, 0.3, 3.75, _ANTHROPIC, _READ)),
    PriceRow("anthropic", "claude-haiku-4-5*", Price(1, 5, 0.1, 1.25, _ANTHROPIC, _READ)),
    # DeepSeek bills a cache miss at the input price and writes the cache for nothing more.
    # The page's list in force from 2025-09-05; pages of others report later cuts.
    PriceRow("deepseek", "deepseek-chat", Price(0.56, 1.68, 0.07, 0.56, _DEEPSEEK, _READ)),
    PriceRow("deepseek", "deepseek-reasoner", Price(0.56, 1.68, 0.07, 0.56, _DEEPSEEK, _READ)),
    # A model on your own machine: no per-token charge.
    PriceRow("ollama", "*", Price(0, 0, 0, 0, "runs locally: no per-token charge", _READ)),
    # Not found on the provider's own page: unknown (give `price:` on the entry).
    PriceRow("anthropic", "*", None),
    PriceRow("deepseek", "*", None),
    PriceRow("openai", "*", None),
    PriceRow("gemini", "*", None),
    PriceRow("xai", "*", None),
    PriceRow("mistral", "*", None),
    PriceRow("groq", "*", None),
    PriceRow("openrouter", "*", None),
    PriceRow("moonshot", "*", None),
)


def price_for(kind: str, model: str) -> Price | None:
    """The price of `model` at provider `kind` from the table; None where unknown."""
    return next((row.price for row in PRICES if row.matches(kind, model)), None)
