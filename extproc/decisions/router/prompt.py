"""The Arch-Router prompt, built exactly as the model card builds it.

The model was fine-tuned on one user message rendered by its own chat template, so we add no
system message of our own and keep whatever the template inserts (Qwen2.5's default system
line included). Everything up to ``<conversation>\\n\\n`` depends only on the route config: that
part is the *static prefix* whose KV cache CTranslate2 keeps between calls.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

TASK_INSTRUCTION = """
You are a helpful assistant designed to find the best suited route.
You are provided with route description within <routes></routes> XML tags:
<routes>

{routes}

</routes>

<conversation>

{conversation}

</conversation>
"""

FORMAT_PROMPT = """
Your task is to decide which route is best suit with user intent on the conversation in <conversation></conversation> XML tags.  Follow the instruction:
1. If the latest intent from user is irrelevant or user intent is full filled, response with other route {"route": "other"}.
2. You must analyze the route descriptions and find the best match route for user latest intent. 
3. You only response the name of the route that best matches the user's request, use the exact name in the <routes></routes>.

Based on your analysis, provide your response in the following JSON formats if you decide to match any route:
{"route": "route_name"} 
"""  # noqa: E501, W291  (byte-exact copy of the model card's text)

# The static prefix ends right after this marker. Route JSON can't contain a raw newline
# (json.dumps escapes it), so the marker occurs exactly once in a rendered prompt.
STATIC_MARKER = "</routes>\n\n<conversation>\n\n"

Routes = Sequence[tuple[str, str]]
Conversation = list[dict[str, str]]


class ChatTemplater(Protocol):
    """The part of a Hugging Face tokenizer the prompt needs."""

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


def routes_json(routes: Routes) -> str:
    """Routes as the model card serialises them (``json.dumps``, ASCII-escaped)."""
    return json.dumps([{"name": name, "description": desc} for name, desc in routes])


def render_user_message(routes: Routes, conversation: Conversation) -> str:
    """The single user message the model was trained on."""
    return (
        TASK_INSTRUCTION.format(routes=routes_json(routes), conversation=json.dumps(conversation))
        + FORMAT_PROMPT
    )


def render_prompt(tokenizer: ChatTemplater, routes: Routes, conversation: Conversation) -> str:
    """The full prompt text through the model's own chat template, ready for generation."""
    message = {"role": "user", "content": render_user_message(routes, conversation)}
    return tokenizer.apply_chat_template([message], tokenize=False, add_generation_prompt=True)


def split_prompt(prompt: str) -> tuple[str, str]:
    """Split a rendered prompt into (static prefix, per-request rest) after the marker."""
    cut = prompt.index(STATIC_MARKER) + len(STATIC_MARKER)
    return prompt[:cut], prompt[cut:]
