"""An answer that can't be read safely (a gzip bomb, an endless line or event, a body that
never becomes events) ends in an Anthropic error, after bounded work: the sidecar never
inflates or holds more than its limits."""

from __future__ import annotations

import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import orjson
import pytest

from extproc.config import Listener
from extproc.errors import GatewayError
from extproc.translate.response import INFLATED_MAX, ResponseTranslation
from extproc.translate.sse import EVENT_MAX
from extproc.translate.translator import ChatTranslator, ResponsesTranslator
from tests.support.gzip_bomb import gzip_bomb


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb(INFLATED_MAX + (8 << 20))


def translation(
    streaming: bool, encoding: str, translator: type = ChatTranslator
) -> ResponseTranslation:
    answer = ResponseTranslation(
        translator(upstream_model="gpt-x", model="gpt-x"), streaming_requested=streaming
    )
    answer.on_headers(200, encoding)
    return answer


def test_a_json_gzip_bomb_is_a_502_before_the_answer_starts(bomb):
    """A whole answer is held to what Envoy would buffer (listener.max_body_bytes)."""
    answer = translation(streaming=False, encoding="gzip")
    assert answer.compressed
    with pytest.raises(GatewayError) as raised:
        answer.on_body(bomb[: len(bomb) // 2], end=False)
        answer.on_body(bomb[len(bomb) // 2 :], end=True)
    assert (raised.value.status, raised.value.error_type) == (502, "api_error")
    assert f"larger than {Listener.max_body_bytes} bytes" in raised.value.message


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


STOPPED = {
    "type": "error",
    "error": {
        "type": "api_error",
        "message": "The gateway stopped reading the provider's answer: the provider sent more "
        f"than {EVENT_MAX} bytes without completing an event.",
    },
}


def test_an_endless_sse_line_ends_the_stream_with_an_error_event():
    answer = translation(streaming=True, encoding="")
    out = answer.on_body(b'data: {"id": "x", "choices": []}\n\n', end=False)
    for _ in range(EVENT_MAX // 65536 + 1):
        out += answer.on_body(b"data: " + b"x" * 65536, end=False)
    out += answer.on_body(b"\n\n", end=True)
    assert error_events(out) == [STOPPED]


@contextmanager
def peak_memory() -> Iterator[Callable[[], int]]:
    """The most memory allocated at once inside the block, beyond what was held before it."""
    was_tracing = tracemalloc.is_tracing()  # PYTHONTRACEMALLOC=1 starts it before the tests
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    try:
        yield lambda: tracemalloc.get_traced_memory()[1] - before
    finally:
        if not was_tracing:
            tracemalloc.stop()


@pytest.mark.parametrize("translator", [ChatTranslator, ResponsesTranslator])
def test_data_lines_that_never_end_their_event_stop_at_the_limit(translator: type) -> None:
    """1 MiB `data:` lines with no blank line between them: the event is refused at the line
    that takes it past EVENT_MAX, not held whole (200 of them took the sidecar to 607 MiB)."""
    answer = translation(streaming=True, encoding="", translator=translator)
    line = b"data: " + b"x" * (1 << 20) + b"\n"
    with peak_memory() as peak:
        out = [answer.on_body(line, end=False) for _ in range(20)]
        held = peak()
    assert [n for n, sent in enumerate(out, start=1) if sent] == [4]
    assert error_events(out[3]) == [STOPPED]
    assert held < 2 * EVENT_MAX  # what the parser held, at most; all 20 lines: 20 MiB
    assert answer.on_body(b"", end=True) == b""


def test_a_body_that_never_becomes_events_is_kept_only_up_to_the_limit() -> None:
    """A streamed request answered with plain JSON is replayed from the body, kept until the
    first event; a body with no event in EVENT_MAX bytes is refused, not kept whole."""
    answer = {"id": "c", "choices": [{"message": {"role": "assistant", "content": "hi"}}]}
    for padding, ends_well in [(b" \n" * 1000, True), (b" \n" * (EVENT_MAX // 2), False)]:
        stream = translation(streaming=True, encoding="")
        out = stream.on_body(padding, end=False) + stream.on_body(orjson.dumps(answer), end=True)
        assert (b"message_stop" in out, error_events(out)) == (
            (True, []) if ends_well else (False, [STOPPED])
        )


def test_what_came_before_the_limit_is_sent_however_the_bytes_are_cut() -> None:
    """The text before an event too large reaches the client, then the error; cut anywhere
    (here: around each line of the large event), the bytes sent are the same."""
    first = b'data: {"id": "x", "choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n'
    line = b"data: " + b"x" * (1 << 20) + b"\n"
    stream = first + line * 5
    ends = [len(first) + n * len(line) for n in range(6)]
    cuts = sorted({0, 1, *(end + d for end in ends for d in (-2, -1, 0, 1)), len(stream) // 2})

    def sent(cut: int) -> bytes:
        answer = translation(streaming=True, encoding="")
        return answer.on_body(stream[:cut], end=False) + answer.on_body(stream[cut:], end=True)

    whole = sent(len(stream))
    assert b'"text":"hi"' in whole and error_events(whole) == [STOPPED]
    for cut in cuts:
        assert sent(cut) == whole, cut


def test_a_whole_answer_that_inflates_past_what_envoy_takes_is_a_502() -> None:
    """Envoy buffers an uncompressed answer only up to listener.max_body_bytes, and takes no
    much larger reply from the sidecar (it called that "the sidecar is unavailable"); a
    gzipped one is held to the same. A streamed answer is not held whole, so not limited."""
    text = "x" * 5000
    answer = {"id": "c", "choices": [{"message": {"role": "assistant", "content": text}}]}
    packer = zlib.compressobj(wbits=31)
    packed = packer.compress(orjson.dumps(answer)) + packer.flush()
    whole = ResponseTranslation(
        ChatTranslator(upstream_model="m", model="m"), streaming_requested=False, whole_max=4096
    )
    whole.on_headers(200, "gzip")
    with pytest.raises(GatewayError) as raised:
        whole.on_body(packed, end=True)
    assert (raised.value.status, raised.value.error_type, raised.value.message) == (
        502,
        "api_error",
        "The gateway stopped reading the provider's answer: it is larger than 4096 bytes "
        "(listener.max_body_bytes).",
    )
    streamed = ResponseTranslation(
        ChatTranslator(upstream_model="m", model="m"), streaming_requested=True, whole_max=4096
    )
    streamed.on_headers(200, "gzip")
    assert b"x" * 5000 in streamed.on_body(packed, end=True)
