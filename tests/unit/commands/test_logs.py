"""`extproc logs`: what one line says about an access-log entry."""

from __future__ import annotations

from extproc.commands import logs

ENTRY = {
    "time": "2026-11-25T21:20:55.166Z",
    "path": "/v1/messages?beta=true",
    "status": 200,
    "flags": "-",
    "duration_ms": 5312,
    "requested_model": "claude-opus-4-8",
    "routed_model": "openai/gpt-4.1",
    "route": "code generation",
    "source": "router",
    "router_ms": 412.3,
    "note": "",
}


def test_a_message_line():
    assert logs.line(ENTRY) == (
        "21:20:55 claude-opus-4-8 → openai/gpt-4.1 [code generation] router 412ms 200 5.3s"
    )


def test_a_stream_the_client_cut_says_so():
    """Envoy logs a 200 for a stream whose client went away (flag DC): not a success."""
    for flags in ("DC", "DC,UT", "UT,DC"):
        assert logs.line({**ENTRY, "flags": flags}).endswith(" 200 5.3s cut by the client")
    assert "cut" not in logs.line({**ENTRY, "flags": "UC"})


def test_count_tokens_lines_are_marked():
    counted = logs.line({**ENTRY, "path": "/v1/messages/count_tokens?beta=true"})
    assert counted.startswith("21:20:55 count_tokens claude-opus-4-8 → ")
    assert "count_tokens" not in logs.line(ENTRY)
