"""Answer trie and the tolerant parser (no model needed)."""

from __future__ import annotations

import pytest

from extproc.decisions.router.decoding import OTHER, AnswerTrie, answer_text, parse_route

NAMES = ["code_generation", "code_review", "bug_fixing"]


def char_encode(text: str) -> list[int]:
    """A tokenizer whose tokens are characters: every shared character is a trie level."""
    return [ord(c) for c in text]


def test_answer_text_is_what_the_model_was_trained_to_write() -> None:
    assert answer_text("code_review") == '{"route": "code_review"}'


def test_trie_forces_the_shared_prefix_and_branches_where_names_differ() -> None:
    trie = AnswerTrie.build(NAMES, char_encode)
    assert bytes(trie.prefix).decode() == '{"route": "'
    assert set(trie.root.names) == {*NAMES, OTHER}
    assert sorted(map(chr, trie.root.children)) == ["b", "c", "o"]
    code = trie.root.children[ord("c")]
    assert code.resolved is None and set(code.names) == {"code_generation", "code_review"}
    assert trie.root.children[ord("b")].resolved == "bug_fixing"
    # c, o, d, e, _ are shared; the sixth character decides.
    assert trie.root.depth() == 6


def test_prefix_stops_where_a_merge_crosses_the_quote() -> None:
    # A tokenizer that merges the opening quote with "o": the prefix must stop before it.
    def merging(text: str) -> list[int]:
        return [1000 if text[i : i + 2] == '"o' else ord(text[i]) for i in range(len(text))]

    trie = AnswerTrie.build(["alpha"], merging)
    assert len(trie.prefix) == len('{"route": ')
    assert set(trie.root.names) == {"alpha", OTHER}


def test_other_is_always_a_candidate_and_never_duplicated() -> None:
    trie = AnswerTrie.build(["other", "x", "x"], char_encode)
    assert set(trie.root.names) == {"other", "x"}
    assert AnswerTrie.build([], char_encode).root.resolved == OTHER


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"route": "code_review"}', "code_review"),
        ('  {"route": "bug_fixing"} ', "bug_fixing"),
        ('```json\n{"route": "code_generation"}\n```', "code_generation"),
        ("```\n{'route': 'code_review'}\n```", "code_review"),
        ("{'route': 'bug_fixing'}", "bug_fixing"),
        ('The best route is {"route": "code_review"} because...', "code_review"),
        ('I pick {"route": "bug_fixing", "sure": true}', "bug_fixing"),
        ("Of {'code_review', 'bug_fixing'} I pick {'route': 'bug_fixing'}", "bug_fixing"),
        ('For {conversation}: {"route": "bug_fixing"}, not {"route": "code_review"}', "bug_fixing"),
        ('It says {"role": "user"}, so:\n```json\n{"route": "bug_fixing"}\n```', "bug_fixing"),
        ('{"route": "code_review", "why": {"confidence": 0.9}}', "code_review"),
        ("{'route': 'code_review', 'why': {'confidence': 0.9}}", "code_review"),
        ("I pick {'route': 'bug_fixing'}.", "bug_fixing"),
        ('{"route": "bug_fixing"} or maybe {"route": "code_review"}', "bug_fixing"),
        ('{"route": "other"}', OTHER),
        ('{"route": "unknown_route"}', OTHER),
        ('{"route": 3}', OTHER),
        ('{"route": "code_rev', OTHER),
        ("", OTHER),
        ("code_review", OTHER),
        ("{not json at all}", OTHER),
        # A set holding a dict or a list is a Python literal that can't be built.
        ('{{"route": "bug_fixing"}}', "bug_fixing"),
        ("{[1]}", OTHER),
    ],
)
def test_parse_route(text: str, expected: str) -> None:
    assert parse_route(text, NAMES) == expected


@pytest.mark.parametrize(
    "text",
    [
        '{"route": "a}b"}',
        "{'route': 'a}b'}",
        '```json\n{"route": "a}b"}\n```',
        'I pick {"route": "a}b"} here',
        "{'route': 'a}b'}, not {'route': 'a'}",
    ],
)
def test_a_brace_inside_a_route_name_is_part_of_the_name(text: str) -> None:
    """The config allows any route name; the object ends where JSON says, not at a ``}``."""
    assert parse_route(text, ["a}b", "a"]) == "a}b"
