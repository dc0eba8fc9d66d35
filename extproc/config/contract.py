"""What each model family requires of a translated request, kept as data.

Providers that speak an OpenAI-style API differ in ways that are invisible until a request
fails in the middle of a tool loop: which field carries the token limit, whether reasoning
effort is accepted, which history fields must come back. `FAMILIES` holds those facts as rows
keyed by provider kind and model-name glob; every row that matches a model applies, in order,
so a later row refines an earlier one. Users add rows in config.yaml (`model_families`) for
models this table does not know yet. docs/translation.md#provider-contracts gives each row's
source.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from fnmatch import fnmatchcase
from typing import Literal

TokenField = Literal["max_tokens", "max_completion_tokens"]
ToolsEffort = Literal["keep", "drop", "none"]


@dataclass(frozen=True)
class Contract:
    """The resolved rules for one configured model."""

    reasoning: bool = False
    """Anthropic `thinking` becomes `reasoning_effort` (refused by models without it)."""
    reasoning_levels: str = "low,medium,high"
    """The `reasoning_effort` values the model takes; a wanted level it lacks becomes the
    next one up (or its highest)."""
    tools_effort: ToolsEffort = "keep"
    """With tools in the request: send the effort (`keep`), leave it out (`drop`), or send
    `none` (newer GPT-5 models refuse function tools with reasoning over Chat Completions)."""
    token_field: TokenField = "max_tokens"
    """OpenAI's reasoning models refuse `max_tokens` and want `max_completion_tokens`."""
    thought_signatures: bool = False
    """Gemini 3: tool calls carry `extra_content.google.thought_signature`, and a history
    whose calls lack it is refused."""
    reasoning_echo: bool = False
    """DeepSeek and Kimi thinking modes: an assistant tool-call turn must come back with its
    `reasoning_content`."""
    tool_name_max: int = 64
    """Longest function name the API accepts (`^[a-zA-Z0-9_-]{1,64}$` for OpenAI's)."""
    short_tool_ids: bool = False
    """Tool-call ids must be 9 alphanumerics (Mistral)."""
    prompt_cache_key: bool = False
    """The API documents `prompt_cache_key`: one Claude Code session shares a prompt cache."""
    file_parts: bool = False
    """PDF documents can be sent as `file` content parts."""
    stream_options: bool = True
    """`stream_options.include_usage` is accepted (OpenAI needs it to report streamed usage)."""
    user_field: bool = True
    """The API takes OpenAI's `user` field."""
    images: bool = True
    """The model reads images; a text-only one refuses every request that holds one."""
    stop: bool = True
    """The model takes `stop` (OpenAI's reasoning models and grok-4 refuse it)."""
    reasoning_summaries: bool = True
    """Responses API: ask for reasoning summaries (shown as thinking). OpenAI refuses them for
    organizations it has not verified; a `model_families` row can turn them off."""
    context_window: int = 0
    """Tokens one request may hold, prompt and answer together; 0: unknown, not checked."""
    output_cap: int = 0
    """The most tokens one answer may hold; 0: unknown (the client's `max_tokens` counts)."""
    pdfs: bool = True
    """The model reads PDF documents (true where unknown: nothing is checked)."""
    server_tools: str = "*"
    """The Anthropic server tools the model runs, by type without its date (`web_search`),
    comma-separated; `*` any of them (or unknown: nothing is checked), empty none."""


COMMON = Contract()
"""What every OpenAI-style API takes: the contract of a model no row knows."""

CONTRACT_FIELDS = {f.name: f.type for f in fields(Contract)}


@dataclass(frozen=True)
class ModelFamily:
    """One row: the rules `settings` apply to models of `provider` matching `model` (globs)."""

    provider: str
    model: str
    settings: tuple[tuple[str, object], ...]

    def matches(self, kind: str, model: str) -> bool:
        return fnmatchcase(kind, self.provider) and fnmatchcase(model, self.model)


def family(provider: str, model: str, **settings: object) -> ModelFamily:
    return ModelFamily(provider, model, tuple(settings.items()))


FAMILIES: tuple[ModelFamily, ...] = (
    # OpenAI: `max_tokens` is deprecated and refused by reasoning models; every model takes
    # `max_completion_tokens`. PDFs as `file` parts; `prompt_cache_key` for cache routing.
    family(
        "openai", "*", token_field="max_completion_tokens", prompt_cache_key=True, file_parts=True
    ),
    family("openai", "o[1-9]*", reasoning=True, stop=False),
    family("openai", "gpt-5*", reasoning=True, stop=False),
    family("openai", "gpt-5.[2-9]*", tools_effort="drop"),
    family("openai", "gpt-5.[6-9]*", tools_effort="none"),
    family("openai", "gpt-5*-chat*", reasoning=False, stop=True, tools_effort="keep"),
    family("openrouter", "*", file_parts=True),
    family("gemini", "gemini-2.5*", reasoning=True),
    family("gemini", "gemini-3*", reasoning=True, thought_signatures=True),
    family("gemini", "gemini-*-latest", reasoning=True, thought_signatures=True),
    family("xai", "grok-3-mini*", reasoning=True, reasoning_levels="low,high"),
    family("xai", "grok-4*", stop=False),
    family("groq", "openai/gpt-oss*", reasoning=True, images=False),
    # Mistral's request body has no stream_options or user (a 422); it always streams usage.
    family("mistral", "*", short_tool_ids=True, stream_options=False, user_field=False),
    # Thinking modes that want their reasoning back on tool-call turns; text-only models.
    family("deepseek", "deepseek-*", images=False, pdfs=False),
    family("deepseek", "deepseek-reasoner*", reasoning_echo=True),
    family("deepseek", "deepseek-v4*", reasoning_echo=True),
    family("moonshot", "kimi-k2*thinking*", reasoning_echo=True, images=False),
    family("moonshot", "kimi-k2.[5-9]*", reasoning_echo=True),
    # What each model reads and how much: the provider's own model page for every value,
    # dated in docs/translation.md#model-facts. A family missing here is unknown: not checked.
    family("anthropic", "claude-sonnet-4-5*", context_window=200_000, output_cap=64_000),
    family("anthropic", "claude-opus-4-5*", context_window=200_000, output_cap=64_000),
    family("anthropic", "claude-haiku-4-5*", context_window=200_000, output_cap=64_000),
    family("gemini", "gemini-2.5-pro*", context_window=1_048_576, output_cap=65_535),
    family("gemini", "gemini-3*-pro-preview*", context_window=1_048_576, output_cap=65_536),
    family("deepseek", "deepseek-chat", context_window=128_000, output_cap=8_000),
    family("deepseek", "deepseek-reasoner", context_window=128_000, output_cap=64_000),
    family("groq", "openai/gpt-oss-*", context_window=131_072, pdfs=False),
)


def contract_for(
    kind: str, model: str, extra: tuple[ModelFamily, ...] = (), **overrides: object
) -> Contract:
    """The contract of `model` at provider `kind`: built-in rows, then `extra` (the user's),
    then `overrides` (a provider entry's own settings), each refining what came before."""
    contract = Contract()
    for row in (*FAMILIES, *extra):
        if row.matches(kind, model):
            contract = replace(contract, **dict(row.settings))
    return replace(contract, **overrides)
