"""What each model family's tokens cost, kept as data, and the cost of one answer's usage.

`PRICES` holds one row per family the catalogue and the contract table know: the provider
kind and a model-name glob, and four prices in USD per million tokens (input, output, cache
reads, cache writes), each with where it was read (the provider's own pricing page, or two
maintained price files that agree) and the date it was read. The first row that matches a
model applies, so a specific glob comes before a general one. A family whose price was not
found, or on which the sources differ, has `price=None`: unknown, and its answers get no
`cost_usd` (never a guess). A `price:` on a provider entry in config.yaml replaces the row.
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
    """Where the price was read: the provider's own pricing page, the price files that
    agree on it, or `config.yaml`."""
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
# The other providers' own pricing pages were not among the search tools' pages (OpenAI's
# only in a transcription, older than these prices). These rows hold the figures on which
# two price files, maintained apart from each other, agree (each read from its package on
# PyPI); a family on which they differ, or that only one lists, stays unknown.
_TWO_FILES = (
    "LiteLLM 1.110.2 model_prices_and_context_window_backup.json, agreeing with "
    "pydantic genai-prices 0.2.5 (prices in force on 2026-12-07)"
)
_COPILOT = "GitHub Docs' Copilot models-and-pricing.yml"
_COPILOT_TOO = f"{_TWO_FILES} and with {_COPILOT}"
# A transcription of OpenAI's pricing page (its Standard tab) kept in a public repository.
_OPENAI_PAGE = (
    "OpenAI's pricing page as transcribed on 2026-02-07 in karstenheld3/SharePoint-GPT-Middleware"
)
_OPENAI_PAGE_TOO = f"{_TWO_FILES} and with {_OPENAI_PAGE}"
_BOTH_PAGES = f"{_TWO_FILES}, with {_COPILOT} and with {_OPENAI_PAGE}"


def _no_write_charge(input: float, output: float, cache_read: float, source: str) -> Price:
    """A provider that charges nothing extra for writing its prompt cache: a token it
    caches costs what input does (Anthropic-format usage counts it as a cache write only
    where the provider reports one)."""
    return Price(input, output, cache_read, input, source, _READ)


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
    # OpenAI: the prices up to 272k input tokens (GPT-5.4 and later cost more above).
    # The pro models list no cached-input price: a cached token costs what input does.
    PriceRow("openai", "gpt-5-pro*", _no_write_charge(15, 120, 15, _OPENAI_PAGE_TOO)),
    PriceRow("openai", "gpt-5.2-pro*", _no_write_charge(21, 168, 21, _OPENAI_PAGE_TOO)),
    PriceRow("openai", "gpt-5.[45]-pro*", _no_write_charge(30, 180, 30, _TWO_FILES)),
    PriceRow("openai", "gpt-5*-pro*", None),
    # GPT-5.6 charges for cache writes (the Responses API's `cache_write_tokens`).
    PriceRow("openai", "gpt-5.6-sol*", Price(4, 20, 0.4, 5, _TWO_FILES, _READ)),
    PriceRow("openai", "gpt-5.6-terra*", Price(2, 12, 0.2, 2.5, _COPILOT_TOO, _READ)),
    PriceRow("openai", "gpt-5.6-luna*", Price(0.2, 1.2, 0.02, 0.25, _COPILOT_TOO, _READ)),
    PriceRow("openai", "gpt-5.[6-9]*", None),
    PriceRow("openai", "gpt-5.5", _no_write_charge(5, 30, 0.5, _COPILOT_TOO)),
    PriceRow("openai", "gpt-5.5-[0-9]*", _no_write_charge(5, 30, 0.5, _COPILOT_TOO)),
    PriceRow("openai", "gpt-5.4-mini*", _no_write_charge(0.75, 4.5, 0.075, _COPILOT_TOO)),
    PriceRow("openai", "gpt-5.4-nano*", _no_write_charge(0.2, 1.25, 0.02, _COPILOT_TOO)),
    PriceRow("openai", "gpt-5.4", _no_write_charge(2.5, 15, 0.25, _COPILOT_TOO)),
    PriceRow("openai", "gpt-5.4-[0-9]*", _no_write_charge(2.5, 15, 0.25, _COPILOT_TOO)),
    PriceRow("openai", "gpt-5.3-codex*", _no_write_charge(1.75, 14, 0.175, _COPILOT_TOO)),
    PriceRow("openai", "gpt-5.2*", _no_write_charge(1.75, 14, 0.175, _OPENAI_PAGE_TOO)),
    PriceRow("openai", "gpt-5.1-codex-mini*", _no_write_charge(0.25, 2, 0.025, _OPENAI_PAGE_TOO)),
    PriceRow("openai", "gpt-5.1*", _no_write_charge(1.25, 10, 0.125, _OPENAI_PAGE_TOO)),
    PriceRow("openai", "gpt-5-mini*", _no_write_charge(0.25, 2, 0.025, _BOTH_PAGES)),
    PriceRow("openai", "gpt-5-nano*", _no_write_charge(0.05, 0.4, 0.005, _OPENAI_PAGE_TOO)),
    PriceRow("openai", "gpt-5", _no_write_charge(1.25, 10, 0.125, _OPENAI_PAGE_TOO)),
    PriceRow("openai", "gpt-5-[0-9]*", _no_write_charge(1.25, 10, 0.125, _TWO_FILES)),
    PriceRow("openai", "gpt-5-codex*", _no_write_charge(1.25, 10, 0.125, _OPENAI_PAGE_TOO)),
    PriceRow("openai", "gpt-5-chat*", _no_write_charge(1.25, 10, 0.125, _OPENAI_PAGE_TOO)),
    PriceRow("openai", "gpt-4.1-mini*", _no_write_charge(0.4, 1.6, 0.1, _OPENAI_PAGE_TOO)),
    PriceRow("openai", "gpt-4.1-nano*", _no_write_charge(0.1, 0.4, 0.025, _OPENAI_PAGE_TOO)),
    PriceRow("openai", "gpt-4.1*", _no_write_charge(2, 8, 0.5, _OPENAI_PAGE_TOO)),
    PriceRow("openai", "o1-pro*", _no_write_charge(150, 600, 150, _OPENAI_PAGE_TOO)),
    PriceRow("openai", "o1", _no_write_charge(15, 60, 7.5, _OPENAI_PAGE_TOO)),
    PriceRow("openai", "o1-[0-9]*", _no_write_charge(15, 60, 7.5, _TWO_FILES)),
    PriceRow("openai", "o3-pro*", _no_write_charge(20, 80, 20, _OPENAI_PAGE_TOO)),
    PriceRow("openai", "o3-mini*", _no_write_charge(1.1, 4.4, 0.55, _OPENAI_PAGE_TOO)),
    PriceRow("openai", "o3-deep-research*", _no_write_charge(10, 40, 2.5, _OPENAI_PAGE_TOO)),
    PriceRow("openai", "o3", _no_write_charge(2, 8, 0.5, _OPENAI_PAGE_TOO)),
    PriceRow("openai", "o3-[0-9]*", _no_write_charge(2, 8, 0.5, _TWO_FILES)),
    PriceRow("openai", "o4-mini-deep-research*", _no_write_charge(2, 8, 0.5, _OPENAI_PAGE_TOO)),
    PriceRow("openai", "o4-mini*", _no_write_charge(1.1, 4.4, 0.275, _OPENAI_PAGE_TOO)),
    # Gemini: the prices up to 200k input tokens; a cache read at the context-caching price
    # (its storage per hour, for an explicit cache, is not counted). The `-latest` aliases
    # move to newer models, so they have no row.
    PriceRow("gemini", "gemini-2.5-pro", _no_write_charge(1.25, 10, 0.125, _TWO_FILES)),
    PriceRow("gemini", "gemini-2.5-flash", _no_write_charge(0.3, 2.5, 0.03, _TWO_FILES)),
    PriceRow("gemini", "gemini-2.5-flash-lite", _no_write_charge(0.1, 0.4, 0.01, _TWO_FILES)),
    PriceRow("gemini", "gemini-3-pro-preview", _no_write_charge(2, 12, 0.2, _TWO_FILES)),
    PriceRow("gemini", "gemini-3.1-pro-preview", _no_write_charge(2, 12, 0.2, _COPILOT_TOO)),
    PriceRow("gemini", "gemini-3-flash-preview", _no_write_charge(0.5, 3, 0.05, _TWO_FILES)),
    PriceRow("gemini", "gemini-3.1-flash-lite", _no_write_charge(0.25, 1.5, 0.025, _TWO_FILES)),
    PriceRow("gemini", "gemini-3.5-flash", _no_write_charge(1.5, 9, 0.15, _COPILOT_TOO)),
    PriceRow("gemini", "gemini-3.5-flash-lite", _no_write_charge(0.3, 2.5, 0.03, _TWO_FILES)),
    # xAI: the prices up to 200k input tokens.
    PriceRow("xai", "grok-4.[67]*", _no_write_charge(2, 6, 0.5, _TWO_FILES)),
    PriceRow("xai", "grok-4.5*", _no_write_charge(2, 6, 0.3, _TWO_FILES)),
    PriceRow("xai", "grok-4.3*", _no_write_charge(1.25, 2.5, 0.2, _TWO_FILES)),
    PriceRow("xai", "grok-4.20*", _no_write_charge(1.25, 2.5, 0.2, _TWO_FILES)),
    PriceRow("mistral", "mistral-large-2512", _no_write_charge(0.5, 1.5, 0.05, _TWO_FILES)),
    PriceRow("mistral", "mistral-large-4*", _no_write_charge(0.7, 2.1, 0.07, _TWO_FILES)),
    PriceRow("mistral", "mistral-medium-latest", _no_write_charge(1.5, 7.5, 0.15, _TWO_FILES)),
    PriceRow("mistral", "mistral-medium-3-5", _no_write_charge(1.5, 7.5, 0.15, _TWO_FILES)),
    PriceRow("mistral", "mistral-small-latest", _no_write_charge(0.15, 0.6, 0.015, _TWO_FILES)),
    PriceRow("mistral", "mistral-small-2603", _no_write_charge(0.15, 0.6, 0.015, _TWO_FILES)),
    PriceRow("mistral", "codestral-2508", _no_write_charge(0.3, 0.9, 0.03, _TWO_FILES)),
    PriceRow("groq", "openai/gpt-oss-120b", _no_write_charge(0.15, 0.6, 0.075, _TWO_FILES)),
    PriceRow("groq", "openai/gpt-oss-20b", _no_write_charge(0.075, 0.3, 0.0375, _TWO_FILES)),
    PriceRow("moonshot", "kimi-k2.5*", _no_write_charge(0.6, 3, 0.1, _TWO_FILES)),
    PriceRow("moonshot", "kimi-k2.6*", _no_write_charge(0.95, 4, 0.16, _TWO_FILES)),
    PriceRow("moonshot", "kimi-k2.7-code", _no_write_charge(0.95, 4, 0.19, _COPILOT_TOO)),
    PriceRow("moonshot", "kimi-k3", _no_write_charge(3, 15, 0.3, _COPILOT_TOO)),
    PriceRow("moonshot", "kimi-k3.1-pro", _no_write_charge(2, 10, 0.2, _TWO_FILES)),
    # Not found, or the sources differ: unknown (give `price:` on the entry).
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
