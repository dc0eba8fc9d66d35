"""Choosing the answer: a trie over the candidates' tokens, and a tolerant free-text parser.

The model answers ``{"route": "<name>"}`` and the name is one of a known set (plus ``other``).
We force the tokens every answer shares and let the model choose only where candidates
differ, stopping as soon as one candidate remains: one or two decoding steps instead of eight.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

OTHER = "other"

Encode = Callable[[str], list[int]]


def answer_text(name: str) -> str:
    """The answer as the model was trained to write it (``json.dumps``, as in the prompt)."""
    return json.dumps({"route": name})


@dataclass
class TrieNode:
    """Candidates that share the token path to this node, and the tokens that extend it."""

    names: frozenset[str]
    children: dict[int, TrieNode] = field(default_factory=dict)

    @property
    def resolved(self) -> str | None:
        """The only candidate left below this node, if just one is."""
        return next(iter(self.names)) if len(self.names) == 1 else None

    def depth(self) -> int:
        """Decoding steps needed from here, at most, before one candidate remains."""
        if self.resolved is not None:
            return 0
        return 1 + max(child.depth() for child in self.children.values())


@dataclass(frozen=True)
class AnswerTrie:
    """Forced answer prefix (token ids every candidate starts with) and the trie after it."""

    prefix: tuple[int, ...]
    root: TrieNode

    @classmethod
    def build(cls, names: Sequence[str], encode: Encode) -> AnswerTrie:
        """Tokenize each full answer, so BPE merges across the quotes come out as trained."""
        candidates = list(dict.fromkeys([*names, OTHER]))
        sequences = {name: encode(answer_text(name)) for name in candidates}
        shared = min(len(seq) for seq in sequences.values())
        first = next(iter(sequences.values()))
        for i in range(shared):
            if any(seq[i] != first[i] for seq in sequences.values()):
                shared = i
                break
        root = TrieNode(frozenset(candidates))
        for name, seq in sequences.items():
            node = root
            for token in seq[shared:]:
                child = node.children.get(token)
                if child is None:
                    child = node.children[token] = TrieNode(frozenset())
                child.names = child.names | {name}
                node = child
        return cls(tuple(first[:shared]), root)


_FENCE = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.DOTALL)
_DECODER = json.JSONDecoder()


def _objects(text: str) -> Iterator[Any]:
    """Each value that starts at a ``{`` of ``text``: JSON, else a Python literal.

    JSON is read by a real decoder, so a ``}`` inside a string (route names may hold one)
    does not end the object; a single-quoted literal ends at the first ``}`` that closes it.
    """
    start = text.find("{")
    while start != -1:
        try:
            yield _DECODER.raw_decode(text, start)[0]
        except ValueError:
            end = text.find("}", start)
            while end != -1:
                try:
                    yield ast.literal_eval(text[start : end + 1])
                    break
                # TypeError: a set of unhashable values, such as ``{{"route": "x"}}``.
                except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                    end = text.find("}", end + 1)
        start = text.find("{", start + 1)


def parse_route(text: str, names: Sequence[str]) -> str:
    """Route name from free model output; anything unparseable or unknown is ``other``.

    Tolerates what archgw's parser tolerates: ```json fences, single quotes, text around the
    object.
    """
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    for value in _objects(text):
        if isinstance(value, dict):
            route = value.get("route")
            return route if isinstance(route, str) and route in names else OTHER
    return OTHER
