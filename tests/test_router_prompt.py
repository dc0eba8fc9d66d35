"""The prompt is byte-for-byte the model card's, and its static prefix is a clean cut."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.router.engine import ArchRouter
from extproc.router.prompt import (
    FORMAT_PROMPT,
    TASK_INSTRUCTION,
    render_user_message,
    split_prompt,
)
from tests.tiny_model import ROUTES, session_model_dir


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArchRouter]:
    router = ArchRouter(session_model_dir(tmp_path_factory), device="cpu")
    yield router
    router.close()


def model_card_prompt(tokenizer: Any, routes: list[tuple[str, str]], conversation: list) -> str:
    """Arch-Router's model card, spelled out independently of our code."""
    route_config = [{"name": name, "description": desc} for name, desc in routes]
    content = (
        TASK_INSTRUCTION.format(
            routes=json.dumps(route_config), conversation=json.dumps(conversation)
        )
        + FORMAT_PROMPT
    )
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )


CONVERSATIONS = [
    [{"role": "user", "content": "write a python function that reverses a string"}],
    [
        {"role": "user", "content": "Écris une fonction — s'il te plaît « vite » 😀"},
        {"role": "assistant", "content": "Voilà:\n```py\ndef f(): ...\n```"},
        {"role": "user", "content": '日本語で説明して "quoted" \\ back\\slash\t<tab>'},
    ],
]


def test_task_text_is_the_model_cards() -> None:
    assert FORMAT_PROMPT.startswith("\nYour task is to decide")
    assert "XML tags.  Follow" in FORMAT_PROMPT
    assert "user latest intent. \n" in FORMAT_PROMPT
    assert FORMAT_PROMPT.endswith('{"route": "route_name"} \n')
    assert TASK_INSTRUCTION.startswith("\nYou are a helpful assistant designed")
    assert "<routes>\n\n{routes}\n\n</routes>" in TASK_INSTRUCTION


@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_prompt_is_byte_equal_to_the_model_card(router: ArchRouter, conversation: list) -> None:
    prompt = router.prompt(ROUTES, conversation)
    assert prompt == model_card_prompt(router.tokenizer, ROUTES, conversation)
    # One user message; the template's default system message is kept, none of ours added.
    assert prompt.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")
    assert prompt.count("<|im_start|>user\n") == 1
    assert prompt.endswith(FORMAT_PROMPT + "<|im_end|>\n<|im_start|>assistant\n")
    assert prompt.isascii()  # json.dumps escapes non-ASCII, as the model card does


def test_exact_rendering_of_a_small_example(router: ArchRouter) -> None:
    routes = [("a", "d\u00e9")]
    conversation = [{"role": "user", "content": "h\u00e9"}]
    assert render_user_message(routes, conversation) == (
        "\nYou are a helpful assistant designed to find the best suited route.\n"
        "You are provided with route description within <routes></routes> XML tags:\n"
        '<routes>\n\n[{"name": "a", "description": "d\\u00e9"}]\n\n</routes>\n\n'
        '<conversation>\n\n[{"role": "user", "content": "h\\u00e9"}]\n\n</conversation>\n'
        + FORMAT_PROMPT
    )


@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_static_prefix_is_a_clean_token_boundary(router: ArchRouter, conversation: list) -> None:
    prompt = router.prompt(ROUTES, conversation)
    static, rest = split_prompt(prompt)
    assert static.endswith("</routes>\n\n<conversation>\n\n")
    assert rest.startswith("[{")
    assert router.encode(static) + router.encode(rest) == router.encode(prompt)
    static_tokens, rest_tokens = router.split_tokens(ROUTES, conversation)
    assert static_tokens == router.tokenizer.convert_ids_to_tokens(router.encode(static))
    assert rest_tokens == router.tokenizer.convert_ids_to_tokens(router.encode(rest))


conversation_st = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant"]), "content": st.text(max_size=80)}
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=60, deadline=None)
@given(conversation_st)
def test_static_split_holds_for_any_conversation(router: ArchRouter, conversation: list) -> None:
    static, rest = router.split_tokens(ROUTES, conversation)
    assert static, "the static prefix must always be usable"
    whole = router.encode(router.prompt(ROUTES, conversation))
    assert static + rest == router.tokenizer.convert_ids_to_tokens(whole)
