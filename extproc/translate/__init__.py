"""Protocol translation between the Anthropic Messages API and other model APIs (sans-I/O).

`translator_for` picks the translator for a provider's interface: `ChatTranslator` (OpenAI
Chat Completions, the `openai_chat` package) or `ResponsesTranslator` (OpenAI Responses, the
`openai_responses` package). Each carries one exchange both ways.
"""

from extproc.translate.anthropic_format import TranslationError
from extproc.translate.translator import (
    ChatTranslator,
    ResponsesTranslator,
    Translator,
    translator_for,
)

__all__ = [
    "ChatTranslator",
    "ResponsesTranslator",
    "TranslationError",
    "Translator",
    "translator_for",
]
