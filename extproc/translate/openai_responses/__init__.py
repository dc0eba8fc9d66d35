"""Anthropic Messages ⇄ OpenAI Responses, sans-I/O.

OpenAI's Codex models answer only on `/v1/responses`, and there a reasoning model's encrypted
reasoning can travel between the calls of a tool loop. `translate_request` turns a Messages
body into a Responses body; `translate_response` and `StreamTranslator` turn the answer (JSON,
or the Responses event stream) back into what Claude Code expects. The encrypted reasoning
rides in the thinking block's `signature` (reasoning.py), so Claude Code sends it back
unchanged. Every rule is listed, with its reason, in docs/translation.md.

Tools, tool calls, tool results and media are built by the `chat_*` builders both translators
share (openai_format.py) and reshaped here: the two APIs differ in the envelope, not the
content.
"""

from extproc.translate.openai_responses.request import translate_request
from extproc.translate.openai_responses.response import translate_response
from extproc.translate.openai_responses.stream import StreamTranslator

__all__ = ["StreamTranslator", "translate_request", "translate_response"]
