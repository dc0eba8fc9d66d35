"""Which client paths the gateway routes (extproc/proxy/paths.py)."""

from __future__ import annotations

import pytest

from extproc.proxy.paths import is_messages


@pytest.mark.parametrize(
    ("path", "routed"),
    [
        ("/v1/messages", True),
        ("/v1/messages/", True),
        ("/v1/messages/count_tokens", True),
        ("/v1/messages/count_tokens/", True),
        ("/v1/messagesX", False),
        ("/v1/messages ", False),
        ("/v1/messages/batches", False),
        ("/V1/MESSAGES", False),
    ],
)
def test_the_messages_paths_are_routed_with_or_without_a_trailing_slash(
    path: str, routed: bool
) -> None:
    assert is_messages(path) is routed
