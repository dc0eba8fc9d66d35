"""The provider catalogue: what each `provider/` prefix in config.yaml means.

Adding a provider is one row in `CATALOGUE` (and, where its models have rules of their
own, rows in `extproc.translate.contract.FAMILIES`). Auth is chosen per API interface
(`AUTH_STYLES`): Anthropic-style providers take `x-api-key`, OpenAI-style ones a
Bearer token, and a provider that needs no key (ollama) says so.
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

# Path appended to the provider's base URL for a Messages request, per interface.
MESSAGES_PATH: dict[Interface, str] = {
    "anthropic": "/v1/messages",
    "openai": "/chat/completions",
    "openai-responses": "/responses",
}

# Paths that differ from the interface default for one provider kind.
PATH_OVERRIDES: dict[tuple[str, Interface], str] = {
    # Ollama serves its OpenAI-compatible API under /v1 of the server root.
    ("ollama", "openai"): "/v1/chat/completions",
    ("ollama", "openai-responses"): "/v1/responses",
}

# Client credential headers: they are Anthropic credentials and never go anywhere else.
CLIENT_AUTH_HEADERS = ("x-api-key", "authorization")


def auth_headers(interface: Interface, key: str) -> dict[str, str]:
    """The header that carries `key` for a provider speaking `interface`."""
    if interface == "anthropic":
        return {"x-api-key": key}
    return {"authorization": f"Bearer {key}"}
