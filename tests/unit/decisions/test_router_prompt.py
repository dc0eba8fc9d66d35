"""The prompt is byte-for-byte the model card's, and its static prefix is a clean cut.

Each test runs with the tiny model's tokenizer and with Arch-Router's own (Qwen2.5's, built
from the ``dashscope`` package's BPE ranks), whose token ids are pinned at the cuts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.decisions.router.engine import ArchRouter
from extproc.decisions.router.prompt import (
    FORMAT_PROMPT,
    TASK_INSTRUCTION,
    render_user_message,
    split_prompt,
)
from tests.support.tiny_model import ROUTES, session_model_dir

SEED_ROUTES = [
    ("code generation", "generating new code snippets, functions, or boilerplate"),
    ("code understanding", "understanding, explaining or reviewing existing code"),
]


@pytest.fixture(scope="module", params=["tiny", "qwen"])
def router(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ArchRouter]:
    if request.param == "qwen":
        yield request.getfixturevalue("qwen_router")
        return
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


def test_qwen_tokenizer_is_qwens(qwen_router: ArchRouter) -> None:
    """Ids published for Qwen2's vocabulary, and the ChatML specials at their ids."""
    assert qwen_router.encode("Hello, world\n\n") == [9707, 11, 1879, 271]
    assert qwen_router.encode("<|im_start|>user\n") == [151644, 872, 198]
    assert qwen_router.encode("<|im_end|><|endoftext|>") == [151645, 151643]
    assert qwen_router.encode("e\u0301") == qwen_router.encode("\u00e9")  # NFC, as Qwen2


@pytest.mark.parametrize("routes", [ROUTES, SEED_ROUTES], ids=["tiny routes", "seed routes"])
@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_token_ids_at_the_cuts_with_qwens_tokenizer(
    qwen_router: ArchRouter, routes: list, conversation: list
) -> None:
    """The exact ids the model reads where the static prefix ends and the answer starts."""
    static, _ = qwen_router.split_tokens(routes, conversation)
    ids = qwen_router.encode(qwen_router.prompt(routes, conversation))
    cut = len(static)
    # ..."}]\n\n</routes>\n\n<conversation>\n\n | [{"role": ...
    assert ids[cut - 6 : cut] == [522, 19794, 1339, 27, 61637, 1339]
    assert ids[cut : cut + 3] == [58, 4913, 5778]
    assert qwen_router.tokenizer.convert_ids_to_tokens(ids[cut : cut + 3]) == ["[", '{"', "role"]
    # ...route_name"} \n<|im_end|>\n<|im_start|>assistant\n, then the forced {"route": "
    assert ids[-5:] == [151645, 198, 151644, 77091, 198]
    trie = qwen_router._config(routes).trie
    assert trie.prefix == (4913, 8966, 788, 330)
    assert qwen_router.encode('{"route": "') == list(trie.prefix)


def test_fixed_text_after_the_conversation_with_qwens_tokenizer(qwen_router: ArchRouter) -> None:
    """What every request pays beyond its window: about 145 tokens (the stand-in said 192).

    The window's last characters may merge with the newlines after them, hence the range.
    """
    for conversation in CONVERSATIONS:
        _, rest = qwen_router.split_tokens(ROUTES, conversation)
        window = len(qwen_router.encode(json.dumps(conversation)))
        assert 143 <= len(rest) - window <= 146
