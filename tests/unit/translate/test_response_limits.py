"""An answer that can't be read safely (a gzip bomb, an endless line) ends in an Anthropic
error, after bounded work: the sidecar never inflates or holds more than its limits."""

from __future__ import annotations

import zlib

import orjson
import pytest

from extproc.errors import GatewayError
from extproc.translate.response import INFLATED_MAX, ResponseTranslation
from extproc.translate.sse import EVENT_MAX
from extproc.translate.translator import ChatTranslator
from tests.support.gzip_bomb import gzip_bomb


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb(INFLATED_MAX + (8 << 20))


def translation(streaming: bool, encoding: str) -> ResponseTranslation:
    answer = ResponseTranslation(
        ChatTranslator(upstream_model="gpt-x", model="gpt-x"), streaming_requested=streaming
    )
    answer.on_headers(200, encoding)
    return answer


def test_a_json_gzip_bomb_is_a_502_before_the_answer_starts(bomb):
    answer = translation(streaming=False, encoding="gzip")
    assert answer.compressed
    with pytest.raises(GatewayError) as raised:
        answer.on_body(bomb[: len(bomb) // 2], end=False)
        answer.on_body(bomb[len(bomb) // 2 :], end=True)
    assert (raised.value.status, raised.value.error_type) == (502, "api_error")
    assert f"more than {INFLATED_MAX} bytes" in raised.value.message


def error_events(out: bytes) -> list[dict]:
    events = [orjson.loads(line[6:]) for line in out.splitlines() if line.startswith(b"data: ")]
    return [event for event in events if event["type"] == "error"]


def test_a_streamed_gzip_bomb_ends_the_stream_with_an_error_event(bomb):
    answer = translation(streaming=True, encoding="gzip")
    out = b"".join(
        answer.on_body(bomb[i : i + 65536], end=False) for i in range(0, len(bomb), 65536)
    )
    out += answer.on_body(b"", end=True)
    [event] = error_events(out)
    assert event["error"]["type"] == "api_error"
    assert f"more than {INFLATED_MAX} bytes" in event["error"]["message"]


def test_a_small_gzip_answer_still_inflates():
    body = orjson.dumps({"choices": [{"message": {"role": "assistant", "content": "hi"}}]})
    answer = translation(streaming=False, encoding="gzip")
    packed = zlib.compressobj(wbits=31)
    out = answer.on_body(packed.compress(body) + packed.flush(), end=True)
    assert orjson.loads(out)["content"][0]["text"] == "hi"


def test_an_endless_sse_line_ends_the_stream_with_an_error_event():
    answer = translation(streaming=True, encoding="")
    out = answer.on_body(b'data: {"id": "x", "choices": []}\n\n', end=False)
    for _ in range(EVENT_MAX // 65536 + 1):
        out += answer.on_body(b"data: " + b"x" * 65536, end=False)
    out += answer.on_body(b"\n\n", end=True)
    [event] = error_events(out)
    assert f"longer than {EVENT_MAX} bytes" in event["error"]["message"]
