"""The router's conversation window, on captured Claude Code requests and by its rules."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.config import ConfigError
from extproc.decisions.router.window import (
    TEXT_LIMIT,
    conversation_window,
    estimate_tokens,
    message_json,
    message_text,
    prompt_tokens,
    window_budget,
)
from extproc.decisions.routing import TokenCounts
from tests.support.captured import FIXTURES

CAPTURES = FIXTURES


@pytest.fixture(scope="module")
def qwen(qwen_router: Any) -> Any:
    """Arch-Router's own tokenizer (Qwen2.5's), as the router loads it."""
    return qwen_router.tokenizer


def captured_body(name: str) -> dict[str, Any]:
    return json.loads((CAPTURES / f"{name}.json").read_text(encoding="utf-8"))["body"]


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def test_first_turn_window_is_the_users_text_without_reminders() -> None:
    window = conversation_window(captured_body("first-turn"), 2048)
    assert window == [user("write a python function that reverses a string")]


def test_tool_loop_window_is_the_same_as_its_own_first_turn() -> None:
    # first-turn.json and tool-loop.json come from different sessions, so compare the
    # tool-loop request with its own first request (the messages before the tool loop).
    body = captured_body("tool-loop")
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["user", "system", "assistant", "user"]
    assert body["messages"][-1]["content"][0]["type"] == "tool_result"
    first = {**body, "messages": body["messages"][:2]}
    window = conversation_window(body, 2048)
    assert window == conversation_window(first, 2048) == [user("run echo hi there")]


def test_every_iteration_of_a_tool_loop_has_the_same_window() -> None:
    body = copy.deepcopy(captured_body("tool-loop"))
    expected = conversation_window(body, 2048)
    for i in range(5):
        body["messages"] += [
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "let me look", "signature": "x"},
                    {"type": "text", "text": f"Running step {i}."},
                    {"type": "tool_use", "id": f"t{i}", "name": "Bash", "input": {"c": "ls"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": f"t{i}", "content": "file.py"},
                    {"type": "text", "text": "<system-reminder>todo list empty</system-reminder>"},
                ],
            },
        ]
        assert conversation_window(body, 2048) == expected


def test_trailing_system_message_is_skipped() -> None:
    body = captured_body("interactive-main")
    assert body["messages"][-1]["role"] == "system"
    window = conversation_window(body, 2048)
    assert window == [user("explain what a python decorator is in one sentence")]


def test_no_reminder_survives_on_any_capture() -> None:
    for path in CAPTURES.glob("*.json"):
        window = conversation_window(captured_body(path.stem), 100_000)
        assert window and window[-1]["role"] == "user"
        assert all("system-reminder" not in m["content"] for m in window)


def test_non_text_blocks_are_dropped_and_text_blocks_flattened() -> None:
    content = [
        {"type": "thinking", "thinking": "hmm", "signature": "s"},
        {"type": "redacted_thinking", "data": "xyz"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "d"}},
        {"type": "tool_use", "id": "1", "name": "Read", "input": {}},
        {"type": "tool_result", "tool_use_id": "1", "content": [{"type": "text", "text": "r"}]},
        {"type": "text", "text": "first part"},
        {"type": "text", "text": " <system-reminder>\nnoise\n</system-reminder>second part "},
    ]
    assert message_text(content) == "first part\nsecond part"
    assert message_text("<system-reminder>a</system-reminder> hi ") == "hi"
    assert message_text(None) == ""


def test_roles_and_empty_messages() -> None:
    body = {
        "messages": [
            user("hello"),
            {"role": "system", "content": "ignored"},
            assistant(""),
            assistant([{"type": "tool_use", "id": "1", "name": "x", "input": {}}]),
            assistant("hi, what do you need?"),
            user("<system-reminder>only a reminder</system-reminder>"),
            user("fix the login bug"),
            assistant("On it."),
            user([{"type": "tool_result", "tool_use_id": "1", "content": "ok"}]),
        ]
    }
    assert conversation_window(body, 2048) == [
        user("hello"),
        assistant("hi, what do you need?"),
        user("fix the login bug"),
    ]


def test_no_user_text_gives_an_empty_window() -> None:
    assert conversation_window({}, 100) == []
    assert conversation_window({"messages": "nope"}, 100) == []
    only_tools = [user([{"type": "tool_result", "tool_use_id": "1", "content": "x"}])]
    assert conversation_window({"messages": only_tools}, 100) == []
    assert conversation_window({"messages": [assistant("hello")]}, 100) == []


def test_budget_keeps_newest_messages() -> None:
    body = {"messages": [user("a" * 40), assistant("b" * 40), user("c" * 40)]}
    each = [prompt_tokens(m["role"], m["content"], estimate_tokens) for m in body["messages"]]
    assert each == [18, 19, 18]  # the JSON each message is in the prompt, four characters a token
    assert conversation_window(body, 40) == [assistant("b" * 40), user("c" * 40)]
    assert conversation_window(body, 55) == body["messages"]
    assert conversation_window(body, 36) == [user("c" * 40)]
    # The latest user text is measured with its role too (42 characters: 19 tokens, 18 without).
    body = {"messages": [assistant("b" * 40), user("c" * 42)]}
    assert conversation_window(body, 38) == body["messages"]
    assert conversation_window(body, 37) == [user("c" * 42)]


def test_latest_user_text_alone_over_budget_is_middle_truncated() -> None:
    text = "START " + "x" * 10_000 + " END"
    window = conversation_window({"messages": [assistant("a" * 40), user(text)]}, 100)
    assert len(window) == 1
    kept = window[0]["content"]
    assert kept.startswith("START ") and kept.endswith(" END") and "…" in kept
    assert prompt_tokens("user", kept, estimate_tokens) == 100  # the budget, filled exactly


def test_a_multi_megabyte_text_is_read_from_its_two_ends() -> None:
    """Only the ends of a huge pasted text can reach the window; its middle is never read."""
    reminder = "<system-reminder>context</system-reminder>"
    text = reminder + "START " + "x" * 4_000_000 + " please fix the bug" + reminder
    [kept] = conversation_window({"messages": [user(text)]}, 256)
    assert kept["content"].startswith("START ") and kept["content"].endswith("fix the bug")
    assert "system-reminder" not in kept["content"]
    assert estimate_tokens(kept["content"]) <= 256
    assert len(message_text(text)) < TEXT_LIMIT + 10


def test_a_latest_text_that_fills_the_budget_exactly_is_kept_whole() -> None:
    assert conversation_window({"messages": [user("c" * 40)]}, 18) == [user("c" * 40)]


def test_only_text_blocks_are_read() -> None:
    """A string in the content list, or a block of another type with a `text` field, is no
    text block."""
    blocks = ["hi", {"type": "tool_use", "text": "x"}, {"type": "text", "text": "ok"}]
    assert message_text(blocks) == "ok"


def test_a_budget_too_small_for_any_message_gives_an_empty_window() -> None:
    """`{"role": "user", "content": ""}` alone is 8 tokens of four characters."""
    assert conversation_window({"messages": [user("hello")]}, 5) == []


def test_the_smallest_cut_keeps_the_texts_first_character() -> None:
    """Counting the JSON's characters: `{"role": "user", "content": "a\\n\\u2026\\n"}` is 42, the
    first character and the ellipsis; with the last character too it would be 43."""
    body = {"messages": [user("abcdefghijklmnopqrst")]}
    assert conversation_window(body, 42, len) == [user("a\n…\n")]
    assert conversation_window(body, 41, len) == []


def test_remembered_counts_give_the_same_windows_and_count_each_message_once() -> None:
    """`routing.TokenCounts`, the counter the sidecar passes: the windows of the bare counter
    at every budget, and each message tokenized once for all the requests of one turn."""
    body = {"messages": [user("one two"), assistant("three four five"), user("six seven")]}
    for budget in range(30, 130):
        remembered = conversation_window(body, budget, TokenCounts(len))
        assert remembered == conversation_window(body, budget, len), budget
    counted: list[str] = []

    def spy(text: str) -> int:
        counted.append(text)
        return len(text)

    counts = TokenCounts(spy)
    for _ in range(2):  # two requests of one turn
        assert conversation_window(body, 1000, counts) == body["messages"]
    assert counted == [message_json(m["role"], m["content"]) for m in reversed(body["messages"])]


def test_custom_token_counter() -> None:
    words = lambda text: len(text.split())  # noqa: E731
    body = {"messages": [user("one two three"), assistant("four five"), user("six seven")]}
    # Each message is counted as its JSON: {"role": "user", "content": "six seven"} is 5 words.
    assert conversation_window(body, 10, words) == [assistant("four five"), user("six seven")]
    assert conversation_window(body, 9, words) == [user("six seven")]


text_st = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=300)
block_st = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, text_st),
    st.builds(lambda t: {"type": "thinking", "thinking": t}, text_st),
    st.builds(lambda t: {"type": "tool_result", "tool_use_id": "x", "content": t}, text_st),
    st.just({"type": "image", "source": {}}),
)
message_st = st.builds(
    lambda role, content: {"role": role, "content": content},
    st.sampled_from(["user", "assistant", "system"]),
    st.one_of(text_st, st.lists(block_st, max_size=4)),
)


@settings(deadline=None)
@given(st.lists(message_st, max_size=8), st.integers(min_value=16, max_value=400))
def test_window_invariants(messages: list[dict[str, Any]], budget: int) -> None:
    window = conversation_window({"messages": messages}, budget)
    texts = [
        {"role": m["role"], "content": message_text(m["content"])}
        for m in messages
        if m["role"] in ("user", "assistant") and message_text(m["content"])
    ]
    users = [i for i, m in enumerate(texts) if m["role"] == "user"]
    if not users:
        assert window == []
        return
    latest = texts[users[-1]]["content"]
    assert window[-1]["role"] == "user"
    assert all(m["content"] and m["role"] in ("user", "assistant") for m in window)
    assert sum(prompt_tokens(m["role"], m["content"], estimate_tokens) for m in window) <= budget
    if prompt_tokens("user", latest, estimate_tokens) <= budget:
        assert window[-1]["content"] == latest
    # Older messages: the contiguous run of text messages just before the latest user text.
    assert window[:-1] == texts[users[-1] - len(window) + 1 : users[-1]]


SCRIPTS = {
    "ascii": "please refactor the parser so that it streams its input. ",
    "japanese": "このパーサーを入力をストリーミングするように書き直してください。",
    "cyrillic": "Перепишите этот парсер, чтобы он читал вход потоком. ",
    "emoji": "🐛🔥🚀✅ fix it 🙏 ",
}


@pytest.mark.parametrize("script", SCRIPTS)
def test_budget_counts_what_the_model_reads(qwen: Any, script: str) -> None:
    """The conversation enters the prompt as ASCII-escaped JSON: that is what is budgeted.

    A Japanese turn measured raw as 235 tokens reached the model as 1,723 (issue 15).
    """
    count = lambda text: len(qwen.encode(text, add_special_tokens=False))  # noqa: E731
    body = {
        "messages": [
            user(SCRIPTS[script] * 4),
            assistant(SCRIPTS[script] * 3),
            user(SCRIPTS[script] * 40),
        ]
    }
    for budget in (64, 256, 512):
        window = conversation_window(body, budget, count)
        read = sum(count(json.dumps(message)) for message in window)
        assert budget * 0.8 <= read <= budget, (budget, read)


def test_prompt_tokens_is_the_escaped_json_message() -> None:
    carried = '{"role": "user", "content": "\\u65e5\\u672c"}'
    assert message_json("user", "日本") == carried
    assert prompt_tokens("user", "日本", len) == len(carried)


REMINDER = "<system-reminder>" + "R" * 1000 + "</system-reminder>"
HALF = TEXT_LIMIT // 2


@pytest.mark.parametrize(
    "offset",
    [
        *range(HALF - len(REMINDER) - 2, HALF + 2, 37),
        *range(HALF - 20, HALF + 2),  # the cut inside the opening or closing tag
        *range(HALF - len(REMINDER) - 2, HALF - len(REMINDER) + 20),
    ],
)
@pytest.mark.parametrize("end", ["head", "tail"])
def test_a_reminder_cut_by_the_limit_leaves_nothing_behind(offset: int, end: str) -> None:
    """The cut to the text's two ends may split a reminder or one of its tags: none of it
    survives, and every character of the user's text on the kept side of the cut does."""
    size = 3 * TEXT_LIMIT
    at = offset if end == "head" else size - HALF - (HALF - offset)
    text = "x" * at + REMINDER + "x" * (size - at - len(REMINDER))
    start, stop, tail_from = at, at + len(REMINDER), size - HALF
    # The head keeps the text before the reminder, and after it if it closes before the cut.
    head = min(start, HALF) + max(0, HALF - stop)
    # The tail keeps the text after the reminder, and before it if it opens after the cut.
    tail = min(size - stop, HALF) + max(0, start - tail_from)
    assert message_text(text) == "x" * head + "\n…\n" + "x" * tail


@pytest.mark.parametrize("into", [1, 5, len("<system-reminder>") - 1])
def test_a_lone_tag_cut_by_the_limit_is_dropped_whole(into: int) -> None:
    """A user's text may hold a lone tag (a stray closing tag, an opening one never closed):
    one that the cut splits is dropped whole, and the text around it kept."""
    opening, closing = "<system-reminder>", "</system-reminder>"
    size = 3 * TEXT_LIMIT
    head = "x" * (HALF - into) + closing  # the stray closing tag straddles the head's cut
    tail = opening + "y" * (HALF + into - len(opening))  # so does the unclosed opening tag
    text = head + "m" * (size - len(head) - len(tail)) + tail
    assert message_text(text) == "x" * (HALF - into) + "\n…\n" + "y" * (HALF + into - len(opening))


def test_a_text_of_exactly_the_limit_is_read_whole() -> None:
    assert message_text("x" * TEXT_LIMIT) == "x" * TEXT_LIMIT


def test_a_reminder_the_cut_opened_goes_and_a_whole_one_after_it_too() -> None:
    """The tail starts inside a reminder and holds a whole one later: both go, and the
    user's text between and after them stays."""
    size = 3 * TEXT_LIMIT
    start = size - HALF - 100  # the tail's cut falls 100 characters into this reminder
    rest = "z" * (HALF - 2 * len(REMINDER))
    text = "x" * start + REMINDER + "y" * 100 + REMINDER + rest
    assert len(text) == size
    assert message_text(text) == "x" * HALF + "\n…\n" + "y" * 100 + rest


def test_a_stray_opening_tag_before_a_cut_reminder_ends_the_head() -> None:
    """The head ends at its first unclosed opening tag: nothing after it can be told apart
    from the reminder that the cut opened."""
    opening, closing = "<system-reminder>", "</system-reminder>"
    head = "x" * 100 + opening + "y" * 100 + opening
    tail = closing + "x" * HALF
    text = head + "R" * (3 * TEXT_LIMIT - len(head) - len(tail)) + tail
    assert message_text(text) == "x" * 100 + "\n…\n" + "x" * HALF


def test_window_tokens_auto_per_device() -> None:
    from extproc.config import parse

    base = "llm_providers:\n  - model: anthropic/claude-sonnet-4-5\n"
    assert parse(base).routing.window_tokens == "auto"
    assert window_budget("auto", "cpu") == 256
    assert window_budget("auto", "cuda") == 512
    assert window_budget("auto", "rocm") == 256  # a device without its own figure: the CPU's
    assert window_budget(1024, "cpu") == 1024
    assert parse(base + "routing: {window_tokens: 1024}\n").routing.window_tokens == 1024
    for bad in ("8", "lots", "-5", "'512'"):
        with pytest.raises(ConfigError) as raised:
            parse(base + f"routing: {{window_tokens: {bad}}}\n")
        assert "routing.window_tokens" in str(raised.value.problems[0])
        assert "write auto or at least 32" in str(raised.value.problems[0])


def test_router_stage_resolves_auto_for_the_models_device(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from extproc.config import Routing
    from extproc.decisions.router.engine import ArchRouter
    from extproc.decisions.routing import RouterStage
    from tests.support.tiny_model import session_model_dir

    stage = RouterStage(Routing())
    assert stage.window_tokens == 256  # before a model is attached: the CPU figure
    model = ArchRouter(session_model_dir(tmp_path_factory), device="cpu")
    stage.attach(model)
    assert stage.window_tokens == window_budget("auto", model.device) == 256
    stage.routing = Routing(window_tokens=1024)  # what a config reload does
    assert stage.window_tokens == 1024
    stage.attach(None, "no model")
    model.close()
