"""Conversations for the router: random turns on which the steered tiny model picks both of
its routes."""

from __future__ import annotations

import random


def conversations(count: int, seed: int) -> list[list[dict[str, str]]]:
    """Varied user/assistant/user turns: the steered tiny model picks both routes on these."""
    rng = random.Random(seed)
    words = ["fix", "the", "bug", "write", "code", "review", "hello", "python", "é", "日本"]
    return [
        [
            {"role": role, "content": " ".join(rng.choices(words, k=rng.randint(1, 39)))}
            for role in ("user", "assistant", "user")[: rng.choice([1, 3])]
        ]
        for _ in range(count)
    ]
