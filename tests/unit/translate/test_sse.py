"""The SSE parser on its own: framing rules and split-point invariance."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.translate.sse import SSEEventTooLarge, SSEParser, encode_event


def parse(*pieces: bytes) -> list[tuple[bytes, bytes]]:
    parser = SSEParser()
    out = [e for piece in pieces for e in parser.feed(piece)]
    return out + parser.close()


def test_line_endings_spacing_comments_and_multiline_data() -> None:
    stream = (
        b": comment\n\n"
        b"data: a\r\n\r\n"
        b"data:b\r\r"
        b"event: error\ndata: {\ndata:  x}\n\n"
        b"data\n\n"
        b"id: 7\nretry: 10\nfoo: bar\n\n"
        b"data: tail"
    )
    assert parse(stream) == [
        (b"", b"a"),
        (b"", b"b"),
        (b"error", b"{\n x}"),
        (b"", b""),
        (b"", b"tail"),
    ]


def test_a_held_carriage_return_is_decided_by_the_next_byte() -> None:
    assert parse(b"data: a\r", b"\ndata: b\r", b"\r") == [(b"", b"a\nb")]
    assert parse(b"data: a\r", b"\r") == [(b"", b"a")]
    assert parse(b"data: a\r") == [(b"", b"a")]
    parser = SSEParser()
    # given out once the next byte decides the second CR, at the latest: no waiting for a line end
    assert parser.feed(b"data: a\r\r") + parser.feed(b"x") == [(b"", b"a")]


def test_utf8_split_inside_a_character() -> None:
    emoji = "😀".encode()
    assert parse(b"data: " + emoji[:1], emoji[1:3], emoji[3:] + b"\n\n") == [(b"", emoji)]


STREAM = (
    b': keep-alive\r\n\r\ndata: {"a": "\xf0\x9f\x98\x80"}\r\n\r\ndata:x\rdata: y\r\r'
    b"event: e\ndata: z\n\ndata: [DONE]\n\n"
)


def test_every_split_point() -> None:
    whole = parse(STREAM)
    for cut in range(len(STREAM) + 1):
        assert parse(STREAM[:cut], STREAM[cut:]) == whole


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=20))
def test_random_splits(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    assert parse(*(STREAM[a:b] for a, b in itertools.pairwise(bounds))) == parse(STREAM)


def test_encode_event() -> None:
    assert encode_event("ping", {"type": "ping", "t": "é"}) == (
        b'event: ping\ndata: {"type":"ping","t":"\xc3\xa9"}\n\n'
    )


def test_a_line_fed_in_small_pieces_is_held_as_pieces_until_it_ends() -> None:
    parser = SSEParser()
    line = b'data: {"x": "' + b"y" * 100_000 + b'"}'
    events = [e for i in range(0, len(line), 7) for e in parser.feed(line[i : i + 7])]
    assert events == []
    assert parser.feed(b"\n\n") == [(b"", line[6:])]
    assert parse(b"data: a\r", b"\r", b"data: b\n\n") == [(b"", b"a"), (b"", b"b")]


@pytest.mark.parametrize("terminated", [False, True])
def test_a_line_longer_than_the_limit_is_refused(terminated: bool) -> None:
    parser = SSEParser(max_event=1000)
    assert parser.feed(b"data: ok\n\n") == [(b"", b"ok")]
    with pytest.raises(SSEEventTooLarge, match="more than 1000 bytes without completing an event"):
        if terminated:
            parser.feed(b"data: " + b"x" * 1000 + b"\n")
        else:
            for _ in range(200):
                parser.feed(b"x" * 10)


def read(max_event: int, *pieces: bytes) -> tuple[list[tuple[bytes, bytes]], bool]:
    """The events of `pieces` fed one by one, and whether the parser gave up on them."""
    parser = SSEParser(max_event=max_event)
    events = []
    try:
        for piece in pieces:
            events += parser.feed(piece)
        events += parser.close()
    except SSEEventTooLarge as exc:
        return events + exc.events, True
    return events, False


# 47 + 47 + 8 bytes since the first event (each terminator counted as one byte), then its end.
LONG_EVENT = b"data: " + b"x" * 40 + b"\n" + b"data: " + b"y" * 40 + b"\n" + b"data: z\n\n"


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_an_event_of_many_lines_counts_whole_against_the_limit(newline: bytes) -> None:
    """Its lines together, not each line, at every split point; the events before it count."""
    stream = (b"data: a\n\n" + LONG_EVENT + b"data: b\n\n").replace(b"\n", newline)
    xyz = (b"", b"x" * 40 + b"\n" + b"y" * 40 + b"\nz")
    assert read(102, stream) == ([(b"", b"a"), xyz, (b"", b"b")], False)
    assert read(101, stream) == ([(b"", b"a")], True)
    for limit in (101, 102):
        for cut in range(len(stream) + 1):
            assert read(limit, stream[:cut], stream[cut:]) == read(limit, stream), (limit, cut)


@pytest.mark.parametrize(
    "noise",
    [b"\n" * 2000, b": keep-alive\n\n" * 200, b"event: x\n" * 200, b"{\n" + b'  "a": 1,\n' * 200],
    ids=["blank lines", "comments", "nameless events", "JSON, not SSE"],
)
def test_bytes_without_an_event_count_too(noise: bytes) -> None:
    """A stream translator keeps a body until its first event (it may be plain JSON): what
    comes without one is bounded like an event."""
    assert read(1000, noise[: noise.rindex(b"\n", 0, 1000) + 1]) == ([], False)  # whole lines
    assert read(1000, noise) == ([], True)
    assert read(1000, noise[:900] + b"\ndata: a\n\n" + noise[:900]) == ([(b"", b"a")], False)


def test_the_parser_forgets_what_it_held_when_it_gives_up() -> None:
    parser = SSEParser(max_event=1000)
    with pytest.raises(SSEEventTooLarge) as raised:
        parser.feed(b"data: done\n\n" + b"data: " + b"x" * 600 + b"\n" + b"data: " + b"y" * 600)
    assert raised.value.events == [(b"", b"done")]
    # Its count starts over: a line of exactly the limit fits again.
    assert parser.feed(b"data: " + b"x" * 993 + b"\n\n") == [(b"", b"x" * 993)]
    assert parser.feed(b"data: new\n\n") == [(b"", b"new")]


def test_the_last_line_without_its_terminator_is_read_as_it_came() -> None:
    """Its pieces joined, a held carriage return dropped, nothing else stripped."""
    assert read(1000, b"data: a", b"X") == ([(b"", b"aX")], False)
    assert read(1000, b"data: a", b"X ") == ([(b"", b"aX ")], False)
    assert read(1000, b"data: a", b"X\r") == ([(b"", b"aX")], False)
    # At the end of the stream it counts with its terminator, as it would have come.
    assert read(10, b"data: 1234") == ([], True)
    assert read(11, b"data: 1234") == ([(b"", b"1234")], False)
