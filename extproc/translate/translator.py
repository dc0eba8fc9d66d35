"""Which translator an exchange gets: the one place that maps a provider's interface to one.

A translator carries one exchange both ways: the client's Messages request into the
provider's API, then the provider's answer, whole or streamed, back into Anthropic's
format. It is set up once per request, from the provider's settings and the client's body,
and does no I/O: dicts and bytes in, bytes out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from extproc.config.contract import COMMON, Contract
from extproc.translate import openai_chat, openai_responses
from extproc.translate.anthropic_format import JSON
from extproc.translate.openai_format import tool_names
from extproc.translate.openai_responses.reasoning import reasoning_origin
from extproc.translate.stream import AnthropicStream
from extproc.translate.token_estimate import estimate_input_tokens


class Translator(Protocol):
    """Both directions of one translated exchange."""

    def request(self, body: JSON) -> bytes:
        """The client's Messages body (parsed) → the provider's request body."""
        ...

    def response(self, status: int, body: bytes) -> tuple[int, bytes]:
        """A whole answer → (status for the client, Anthropic JSON bytes)."""
        ...

    def stream(self) -> AnthropicStream:
        """A translator for the streamed answer: provider SSE in, Anthropic SSE out."""
        ...


@dataclass(frozen=True)
class _Exchange:
    """What both translators are set up with."""

    upstream_model: str
    """The provider's name for the model, written into the request."""
    model: str
    """The model the client asked for, named in the answer: Claude Code drops the thinking
    blocks of an answer from any other, and ours carry what the provider needs back."""
    contract: Contract = COMMON
    max_tokens_cap: int | None = None
    tool_names: dict[str, str] = field(default_factory=dict)
    """Tool names as sent to the provider → the client's (long MCP names are shortened)."""
    input_tokens_estimate: int = 0
    """Shown in `message_start` until the provider reports its count."""


@dataclass(frozen=True)
class ChatTranslator(_Exchange):
    """Anthropic Messages ⇄ OpenAI Chat Completions (the `openai_chat` package)."""

    def request(self, body: JSON) -> bytes:
        return openai_chat.translate_request(
            body,
            model=self.upstream_model,
            contract=self.contract,
            max_tokens_cap=self.max_tokens_cap,
        )

    def response(self, status: int, body: bytes) -> tuple[int, bytes]:
        return openai_chat.translate_response(
            status, body, model=self.model, tool_names=self.tool_names
        )

    def stream(self) -> AnthropicStream:
        return openai_chat.StreamTranslator(
            model=self.model,
            input_tokens_estimate=self.input_tokens_estimate,
            tool_names=self.tool_names,
        )


@dataclass(frozen=True)
class ResponsesTranslator(_Exchange):
    """Anthropic Messages ⇄ OpenAI Responses (the `openai_responses` package)."""

    origin: str = ""
    """The provider entry and account encrypted reasoning is signed for (`reasoning_origin`):
    it goes back only there."""

    def request(self, body: JSON) -> bytes:
        return openai_responses.translate_request(
            body,
            model=self.upstream_model,
            contract=self.contract,
            max_tokens_cap=self.max_tokens_cap,
            origin=self.origin,
        )

    def response(self, status: int, body: bytes) -> tuple[int, bytes]:
        return openai_responses.translate_response(
            status, body, model=self.model, tool_names=self.tool_names, origin=self.origin
        )

    def stream(self) -> AnthropicStream:
        return openai_responses.StreamTranslator(
            model=self.model,
            input_tokens_estimate=self.input_tokens_estimate,
            tool_names=self.tool_names,
            origin=self.origin,
        )


def translator_for(
    interface: str,
    body: JSON,
    *,
    upstream_model: str,
    contract: Contract = COMMON,
    max_tokens_cap: int | None = None,
    entry: str = "",
    base_url: str = "",
    access_key: str | None = None,
) -> Translator:
    """The translator for a provider speaking `interface` (`openai` or `openai-responses`),
    set up for the client's `body`. A provider speaking Anthropic Messages needs none.
    `entry` (the provider's name), `base_url` and `access_key` say whose encrypted reasoning
    a Responses provider may be sent."""
    exchange: JSON = {
        "upstream_model": upstream_model,
        "model": str(body.get("model", upstream_model)),
        "contract": contract,
        "max_tokens_cap": max_tokens_cap,
        "tool_names": tool_names(body, contract),
        "input_tokens_estimate": estimate_input_tokens(body),
    }
    if interface == "openai":
        return ChatTranslator(**exchange)
    if interface == "openai-responses":
        origin = reasoning_origin(entry, base_url, upstream_model, access_key)
        return ResponsesTranslator(**exchange, origin=origin)
    raise ValueError(f"no translator for the {interface!r} interface")
