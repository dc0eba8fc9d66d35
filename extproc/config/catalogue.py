"""The provider catalogue: what each `provider/` prefix in config.yaml means.

Adding a provider is one row in `CATALOGUE` (and, where its models have rules of their
own, rows in `extproc.config.contract.FAMILIES`). A provider that needs no key (ollama)
says so; the path and the auth header each interface takes are in
`extproc.providers.upstream`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Interface = Literal["anthropic", "openai", "openai-responses"]
"""The wire a provider speaks: Anthropic Messages, OpenAI Chat Completions (`openai`, also
written `openai-chat` in config.yaml) or OpenAI Responses."""

INTERFACE_NAMES: dict[str, Interface] = {
    "anthropic": "anthropic",
    "openai": "openai",
    "openai-chat": "openai",
    "openai-responses": "openai-responses",
}
"""`provider_interface` values in config.yaml → the wire they select."""


@dataclass(frozen=True)
class ProviderKind:
    """Static facts about one provider family."""

    name: str
    interface: Interface
    base_url: str | None
    """Default base URL; None means the user must give `base_url`."""
    needs_key: bool = True
    """False when the provider works without any credential (local servers)."""
    passes_client_auth: bool = False
    """True when the client's own Anthropic credentials may be forwarded (only Anthropic)."""


CATALOGUE: dict[str, ProviderKind] = {
    kind.name: kind
    for kind in (
        ProviderKind(
            "anthropic", "anthropic", "https://api.anthropic.com", passes_client_auth=True
        ),
        ProviderKind("deepseek", "anthropic", "https://api.deepseek.com/anthropic"),
        # Codex models answer only on /v1/responses; reasoning survives tool loops there.
        ProviderKind("openai", "openai-responses", "https://api.openai.com/v1"),
        ProviderKind("gemini", "openai", "https://generativelanguage.googleapis.com/v1beta/openai"),
        ProviderKind("xai", "openai", "https://api.x.ai/v1"),
        ProviderKind("mistral", "openai", "https://api.mistral.ai/v1"),
        ProviderKind("groq", "openai", "https://api.groq.com/openai/v1"),
        ProviderKind("openrouter", "openai", "https://openrouter.ai/api/v1"),
        ProviderKind("moonshot", "openai", "https://api.moonshot.ai/v1"),
        ProviderKind("ollama", "openai", None, needs_key=False),
    )
}
