"""Protocol translation between the Anthropic Messages API and other model APIs (sans-I/O)."""

from extproc.translate.anthropic_format import TranslationError
from extproc.translate.openai_chat import StreamTranslator, translate_request, translate_response

__all__ = ["StreamTranslator", "TranslationError", "translate_request", "translate_response"]
