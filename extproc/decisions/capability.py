"""Whether the chosen model can take a request, and which candidate takes it when not.

A provider entry's candidates are itself, its `fallbacks` and then the default model
(`Config.candidates`). Before a request leaves, it is checked against the chosen model's facts
(`extproc/config/contract.py`): its estimated size within the model's window, images and PDFs
only to a model that reads them, Anthropic's server tools only to a model that runs them. The
first candidate that fits gets the request, and the decision's note says why each one before
it was skipped. When none fits, the chosen model gets it as before, so that the provider's own
error reaches the user: nothing is ever cut. A fact nobody knows (0, `*`) is not checked.
A candidate cooling down after failures (`extproc/decisions/cooldown.py`) is skipped the same
way, with the same kind of note. The candidates after the one chosen, tried only if it fails
(failover), are checked the same way (`worth_trying`).

The estimate is cheap and local (no tokenizer, no model call): the body's size in bytes, less
the base64 of its images and PDFs, over `BYTES_PER_TOKEN`, plus a fixed cost per image and
per PDF page. docs/translation.md#model-facts says how far off it can be for each tokenizer.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from extproc.config import Config, Provider
from extproc.decisions.cooldown import NOT_COOLING, Cooldowns
from extproc.decisions.decision import Decision

BYTES_PER_TOKEN = 3
"""Fewer bytes than the usual four characters a token of English: the margin. JSON's quotes,
keys and escapes in the body add more of it."""
IMAGE_TOKENS = 1_600
"""Anthropic's cost of an image at its largest size before it is scaled down (about 1.15
megapixels, width × height / 750); OpenAI's and Gemini's are lower."""
PDF_PAGE_TOKENS = 3_000
"""The top of Anthropic's 1,500-3,000 tokens a PDF page (its text and the page as an image)."""
_DATED = re.compile(r"_\d{8}$")
_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")


@dataclass(frozen=True)
class Needs:
    """What a request asks of the model that serves it."""

    input_tokens: int
    """The estimate of its prompt: system, messages, tools."""
    max_tokens: int
    """The answer's `max_tokens` as the client asked (0: not given)."""
    images: bool = False
    pdfs: bool = False
    server_tools: tuple[str, ...] = ()
    """Anthropic tool types without their date (`web_search`): the tools only Anthropic runs."""


def _blocks(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The content blocks of every message, and those inside tool results."""
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else ():
            if not isinstance(block, dict):
                continue
            yield block
            inner = block.get("content") if block.get("type") == "tool_result" else None
            yield from (b for b in inner if isinstance(b, dict)) if isinstance(inner, list) else ()


def _pdf_pages(data: str) -> int:
    """Pages of a base64 PDF, counted by their page objects (at least 1: a PDF that keeps them
    in compressed object streams is counted as one page)."""
    try:
        return max(1, len(_PAGE.findall(base64.b64decode(data))))
    except (binascii.Error, ValueError):
        return 1


def needs_of(body: dict[str, Any], size: int) -> Needs:
    """What the request (`body`, the parsed routing fields of a `size`-byte body) needs."""
    media_bytes = media_tokens = 0
    images = pdfs = False
    for block in _blocks(body):
        kind = block.get("type")
        source = block.get("source")
        source = source if isinstance(source, dict) else {}
        data = source.get("data") if source.get("type") == "base64" else None
        if kind == "image":
            images = True
            media_tokens += IMAGE_TOKENS
            media_bytes += len(data) if isinstance(data, str) else 0
        elif kind == "document" and (
            source.get("media_type") == "application/pdf" or source.get("type") == "url"
        ):  # Anthropic's URL documents are PDFs; its other sources say their media type
            pdfs = True
            pages = _pdf_pages(data) if isinstance(data, str) else 1
            media_tokens += pages * PDF_PAGE_TOKENS
            media_bytes += len(data) if isinstance(data, str) else 0
    tools = body.get("tools")
    server_tools = tuple(
        _DATED.sub("", tool["type"])
        for tool in (tools if isinstance(tools, list) else ())
        if isinstance(tool, dict) and isinstance(tool.get("type"), str) and tool["type"] != "custom"
    )
    max_tokens = body.get("max_tokens")
    return Needs(
        input_tokens=max(0, size - media_bytes) // BYTES_PER_TOKEN + media_tokens,
        max_tokens=max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 0,
        images=images,
        pdfs=pdfs,
        server_tools=server_tools,
    )


def _thousands(tokens: int) -> str:
    """141234 as `141k`; below a thousand, the number itself."""
    return f"{round(tokens / 1000)}k" if tokens >= 1000 else str(tokens)


def problem(provider: Provider, needs: Needs) -> str:
    """Why `provider` can't take a request with these needs; empty when it can."""
    contract = provider.contract
    if needs.images and not contract.images:
        return "reads no images"
    # A translated request carries PDFs only where the API takes `file` parts.
    if needs.pdfs and not (
        contract.pdfs and (provider.interface == "anthropic" or contract.file_parts)
    ):
        return "reads no PDFs"
    for tool in needs.server_tools:
        # A translated request drops them: only an Anthropic-format API can run them.
        runs = contract.server_tools == "*" or tool in contract.server_tools.split(",")
        if provider.interface != "anthropic" or not runs:
            return f"runs no {tool} server tool"
    window = contract.context_window
    if not window:
        return ""
    # The entry's `max_tokens` caps translated requests only (an Anthropic-format body goes
    # on as the client wrote it); the model writes no more than its own cap either way.
    entry_cap = provider.max_tokens if provider.interface != "anthropic" else None
    output = min([needs.max_tokens, *(cap for cap in (entry_cap, contract.output_cap) if cap)])
    if needs.input_tokens + output <= window:
        return ""
    asked = f" + {_thousands(output)} max_tokens" if output else ""
    return f"~{_thousands(needs.input_tokens)} input tokens{asked} > {_thousands(window)} window"


def choose(
    config: Config,
    decision: Decision,
    needs: Needs,
    cooldowns: Cooldowns | None = None,
    now: float = 0.0,
) -> Decision:
    """The decision with the first of its provider's candidates that can take the request and
    is not cooling down (`cooldowns` at `now`), the note saying why each one before it was
    skipped; unchanged when the chosen one can.

    When every candidate is skipped, the first that can take it gets it although it rests (a
    cooldown is a guess, a window is not), else the chosen one: the request is never refused
    here, and the provider's own error reaches the user.
    """
    skipped: list[str] = []
    cooled: list[str] = []
    fits: Provider | None = None
    for candidate in config.candidates(decision.provider):
        why = problem(candidate, needs)
        if not why:
            resting = cooldowns.cooling(candidate.name, now) if cooldowns else NOT_COOLING
            if not resting:
                if not skipped:
                    return decision
                note = _joined(decision.note, skipped)
                return replace(decision, provider=candidate, note=note, cooled=tuple(cooled))
            fits = fits or candidate
            cooled.append(candidate.name)
            why = resting.note
        skipped.append(f"{candidate.name} skipped: {why}")
    if fits is None:
        skipped.append(f"no candidate fits, sent to {decision.provider.name}")
        return replace(decision, note=_joined(decision.note, skipped))
    skipped.append(f"every candidate that fits is cooling down, sent to {fits.name}")
    return replace(decision, provider=fits, note=_joined(decision.note, skipped))


def worth_trying(
    later: tuple[Provider, ...],
    needs: Needs,
    cooldowns: Cooldowns | None = None,
    now: float = 0.0,
) -> tuple[Provider, ...]:
    """Of the candidates after a chain's head, those its request may fail over to, in order:
    the ones that can take it and, unless every one of those rests, the ones not cooling
    down. The head was chosen by `choose`; these are only tried if it fails, and a model
    that can't take the request would only fail it again, or worse (an image sent as text)."""
    fitting = tuple(c for c in later if not problem(c, needs))
    if cooldowns is None:
        return fitting
    awake = tuple(c for c in fitting if not cooldowns.cooling(c.name, now))
    return awake or fitting


def _joined(note: str, skipped: list[str]) -> str:
    return "; ".join([note, *skipped] if note else skipped)
