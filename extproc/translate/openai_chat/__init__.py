"""Anthropic Messages ⇄ OpenAI Chat Completions, sans-I/O.

`translate_request` turns a Messages body into a Chat Completions body; `translate_response`
and `StreamTranslator` turn the answer (JSON or SSE) back into what Claude Code expects.
Every rule is listed, with its reason, in docs/translation.md.
"""

from extproc.translate.openai_chat.request import translate_request
from extproc.translate.openai_chat.response import translate_response
from extproc.translate.openai_chat.stream import StreamTranslator

__all__ = ["StreamTranslator", "translate_request", "translate_response"]
