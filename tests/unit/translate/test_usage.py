"""UsageReader: token counts from Anthropic answers, at every split point of the bytes."""

from __future__ import annotations

import json

from extproc.translate.sse import EVENT_MAX
from extproc.translate.usage import UsageReader
from tests.support.fake_anthropic import message, sse_bytes, sse_events


def test_stream_counts_at_every_split_point():
    raw = b"".join(sse_bytes(sse_events("claude-x", "héllo wörld ✓")))
    for cut in range(len(raw) + 1):
        reader = UsageReader(streaming=True)
        reader.feed(raw[:cut])
        reader.feed(raw[cut:])
        assert reader.finish() == {"input_tokens": 12, "output_tokens": 6}, cut


def test_json_answer_and_garbage():
    reader = UsageReader(streaming=False)
    body = json.dumps(message("claude-x", "hi")).encode()
    reader.feed(body[:10])
    reader.feed(body[10:])
    assert reader.finish() == {"input_tokens": 12, "output_tokens": 6}
    broken = UsageReader(streaming=True)
    broken.feed(b'event: message_delta\ndata: {"usage": \n\ndata: [1]\n\n')
    assert broken.finish() == {}


def test_an_overlong_line_only_gives_up_the_counts():
    reader = UsageReader(streaming=True)
    reader.feed(b"data: " + b"x" * EVENT_MAX)
    reader.feed(b"x\n\n" + b"".join(sse_bytes(sse_events("claude-x", "hi"))))
    assert reader.finish() == {}
