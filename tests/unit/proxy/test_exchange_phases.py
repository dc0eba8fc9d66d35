"""Exchange cases the mutation run (docs/testing.md) found that no test held."""

from __future__ import annotations

import asyncio
import gzip
import logging

import orjson
import pytest
from envoy_data_plane.envoy.extensions.filters.http.ext_proc.v3 import (
    ProcessingModeBodySendMode,
    ProcessingModeHeaderSendMode,
)
from envoy_data_plane.envoy.service.ext_proc.v3 import ProcessingResponse

from extproc.app import build_runtime
from extproc.config import parse
from extproc.decisions.routing import RouterStage
from extproc.errors import GatewayError
from extproc.proxy.exchange import Exchange, _parse_body, rewrite_model
from extproc.proxy.wire import Phase
from extproc.translate.openai_format import provider_tool_name


def exchange_for(providers: str, preamble: str = "") -> Exchange:
    """An exchange on a gateway with these `llm_providers` entries, after `preamble`'s settings."""
    config = parse(preamble + "llm_providers:\n" + providers)
    return Exchange(build_runtime(config, RouterStage(config.routing)))


def test_signed_thinking_blocks_are_kept():
    """Only thinking another provider wrote (no signature) is dropped; Anthropic's own,
    signed, must reach it again unchanged."""
    signed = {"type": "thinking", "thinking": "hmm", "signature": "EqQBCkYIBxgCKkD"}
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [signed, {"type": "text", "text": "a"}]},
        {"role": "user", "content": "and?"},
    ]
    raw = orjson.dumps({"model": "asked", "messages": messages})
    body, span = _parse_body(raw)
    rewritten = b"".join(rewrite_model(raw, body, "routed", span))
    assert rewritten == raw.replace(b'"asked"', b'"routed"')


def test_another_path_without_an_anthropic_provider_is_not_found():
    exchange = exchange_for("  - model: openai/gpt-4.1\n    access_key: k\n")
    with pytest.raises(GatewayError) as refused:
        exchange.on_request_headers({":path": "/v1/models?limit=5", ":method": "GET"}, True)
    error = refused.value
    assert (error.status, error.error_type, error.message) == (
        404,
        "not_found_error",
        "The gateway does not serve /v1/models: it routes /v1/messages and "
        "/v1/messages/count_tokens, and passes the paths in pass_through_paths to an "
        "anthropic provider.",
    )


def test_another_path_goes_to_the_anthropic_provider_with_its_key():
    """Model lists and telemetry go to the first `anthropic` entry, on its key: the headers
    reply names its cluster, sets its key and removes the client's credentials."""
    exchange = exchange_for(
        "  - model: openai/gpt-4.1\n    access_key: k\n"
        "  - model: anthropic/claude-x\n    access_key: sk-gw\n    base_url: http://10.0.0.7:8080\n"
    )
    reply = ProcessingResponse.parse(
        exchange.on_request_headers({":path": "/v1/models", ":method": "GET"}, True)
    )
    mutation = reply.request_headers.response.header_mutation
    assert {o.header.key: o.header.raw_value for o in mutation.set_headers} == {
        "x-extproc-cluster": b"10_0_0_7_8080",
        "x-api-key": b"sk-gw",
    }
    assert set(mutation.remove_headers) == {"x-api-key", "authorization"}
    assert reply.request_headers.response.clear_route_cache
    # The access log names the provider (no model was decided).
    assert reply.dynamic_metadata.to_dict() == {
        "envoy.filters.http.ext_proc": {"provider": "anthropic/claude-x"}
    }


def answered(
    exchange: Exchange,
    body: dict,
    status: int,
    content_type: str,
    chunks: list[bytes],
    encoding: str = "",
):
    """The replies to one whole exchange, each phase sent as the server does (`handle`):
    request headers and body, then the answer's headers and each chunk of its body."""
    headers = {":path": "/v1/messages", ":method": "POST", "content-type": "application/json"}
    answer_headers = {":status": str(status), "content-type": content_type}
    phases = [
        Phase("request_headers", headers),
        Phase("request_body", body=orjson.dumps(body), end_of_stream=True),
        Phase("response_headers", {**answer_headers, "content-encoding": encoding}),
        *(
            Phase("response_body", body=chunk, end_of_stream=i == len(chunks) - 1)
            for i, chunk in enumerate(chunks)
        ),
    ]

    async def send() -> list[ProcessingResponse]:
        return [ProcessingResponse.parse(await exchange.handle(phase)) for phase in phases]

    _, _, on_headers, *on_chunks = asyncio.run(send())
    return on_headers, on_chunks


def metadata(reply: ProcessingResponse) -> dict:
    fields = reply.dynamic_metadata.fields if reply.dynamic_metadata else {}
    return {
        key: {k: v.number_value for k, v in value.struct_value.fields.items()}
        for key, value in fields.items()
    }


CHAT_COMPLETIONS = "  - model: groq/llama-3.3-70b-versatile\n    access_key: k\n"
ASKED = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC_SSE = [
    b'event: message_start\ndata: {"type":"message_start","message":{"usage":'
    b'{"input_tokens":12,"output_tokens":1}}}\n\n',
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
    b'"usage":{"output_tokens":6}}\n\n',
]
ANTHROPIC_JSON = [b'{"type":"message","usage":{"input_tokens":3,', b'"output_tokens":4}}']


@pytest.mark.parametrize(
    ("content_type", "chunks", "counts"),
    [
        ("text/event-stream; charset=utf-8", ANTHROPIC_SSE, (12, 6)),
        ("application/json", ANTHROPIC_JSON, (3, 4)),
    ],
)
def test_log_tokens_reads_the_answer_chunk_by_chunk_and_passes_it_on(content_type, chunks, counts):
    exchange = exchange_for("  - model: anthropic/claude-x\n    access_key: k\n")
    exchange.runtime.config = parse(
        "listener: {log_tokens: true}\nllm_providers:\n  - model: anthropic/claude-x\n"
        "    access_key: k\n"
    )
    on_headers, on_chunks = answered(exchange, ASKED, 200, content_type, chunks)
    assert on_headers.mode_override.response_body_mode == ProcessingModeBodySendMode.STREAMED
    assert [r.response_body.response.body_mutation for r in on_chunks] == [None] * len(chunks)
    assert [metadata(r) for r in on_chunks[:-1]] == [{}] * (len(chunks) - 1)
    [logged] = metadata(on_chunks[-1]).values()
    assert (logged["input_tokens"], logged["output_tokens"]) == counts


def test_log_tokens_leaves_an_error_answer_alone():
    exchange = exchange_for("  - model: anthropic/claude-x\n    access_key: k\n")
    exchange.runtime.config = parse(
        "listener: {log_tokens: true}\nllm_providers:\n  - model: anthropic/claude-x\n"
        "    access_key: k\n"
    )
    on_headers, _ = answered(exchange, ASKED, 300, "application/json", [])
    assert on_headers.mode_override is None or not on_headers.mode_override.response_body_mode
    assert exchange.usage is None


@pytest.mark.parametrize(
    ("stream", "status", "mode", "client_type"),
    [
        (True, 200, ProcessingModeBodySendMode.STREAMED, "text/event-stream; charset=utf-8"),
        (False, 200, ProcessingModeBodySendMode.BUFFERED, "application/json"),
        (True, 429, ProcessingModeBodySendMode.BUFFERED, "application/json"),
    ],
)
def test_a_translated_answer_is_asked_for_in_the_mode_it_needs(stream, status, mode, client_type):
    exchange = exchange_for(CHAT_COMPLETIONS)
    upstream_type = "text/event-stream" if stream and status == 200 else "application/json"
    on_headers, _ = answered(exchange, {**ASKED, "stream": stream}, status, upstream_type, [])
    assert on_headers.mode_override.response_body_mode == mode
    mutation = on_headers.response_headers.response.header_mutation
    assert {o.header.key: o.header.raw_value.decode() for o in mutation.set_headers}[
        "content-type"
    ] == client_type
    assert set(mutation.remove_headers) == {"content-length", "content-encoding"}


def test_a_translated_stream_is_translated_chunk_by_chunk():
    exchange = exchange_for(CHAT_COMPLETIONS)
    chunk = (
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}'
        b"\n\n"
    )
    usage = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1}}\n\n'
    _, (first, last) = answered(
        exchange,
        {**ASKED, "stream": True},
        200,
        "text/event-stream",
        [chunk, usage + b"data: [DONE]\n\n"],
    )
    sent = first.response_body.response.body_mutation.body
    assert sent.startswith(b"event: message_start\n") and b'"text":"Hi"' in sent
    assert last.response_body.response.body_mutation.body.endswith(
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    [logged] = metadata(last).values()
    assert (logged["input_tokens"], logged["output_tokens"]) == (5, 1)


def test_a_gzipped_translated_answer_is_inflated_first():
    """Some OpenAI-style servers compress although the gateway asked for identity."""
    exchange = exchange_for(CHAT_COMPLETIONS)
    completion = orjson.dumps(
        {
            "id": "c",
            "choices": [{"index": 0, "message": {"content": "Hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1},
        }
    )
    packed = gzip.compress(completion)
    _, (first, last) = answered(
        exchange, ASKED, 200, "application/json", [packed[:10], packed[10:]], encoding="gzip"
    )
    assert first.response_body.response.body_mutation.body == b""
    message = orjson.loads(last.response_body.response.body_mutation.body)
    assert (message["content"], message["stop_reason"]) == (
        [{"type": "text", "text": "Hi"}],
        "end_turn",
    )


def test_a_gzipped_whole_answer_is_held_to_the_body_limit():
    """Envoy buffers at most listener.max_body_bytes of an uncompressed answer, and takes
    no much larger reply from the sidecar: an inflated one is held to the same."""
    exchange = exchange_for(CHAT_COMPLETIONS, "listener:\n  max_body_bytes: 4096\n")
    content = {"content": "x" * 5000}
    completion = orjson.dumps({"id": "c", "choices": [{"index": 0, "message": content}]})
    with pytest.raises(GatewayError) as refused:
        answered(exchange, ASKED, 200, "application/json", [gzip.compress(completion)], "gzip")
    assert (refused.value.status, refused.value.message) == (
        502,
        "The gateway stopped reading the provider's answer: it is larger than 4096 bytes "
        "(listener.max_body_bytes).",
    )


def test_log_tokens_reads_an_answer_without_content_type_as_json():
    exchange = exchange_for("  - model: anthropic/claude-x\n    access_key: k\n")
    exchange.runtime.config = parse(
        "listener: {log_tokens: true}\nllm_providers:\n  - model: anthropic/claude-x\n"
        "    access_key: k\n"
    )
    headers = {":path": "/v1/messages", ":method": "POST", "content-type": "application/json"}
    exchange.on_request_headers(headers, False)
    asyncio.run(exchange.on_request_body(orjson.dumps(ASKED)))
    on_headers = ProcessingResponse.parse(exchange.on_response_headers({":status": "200"}))
    assert on_headers.mode_override.response_body_mode == ProcessingModeBodySendMode.STREAMED
    last = ProcessingResponse.parse(exchange.on_response_body(b"".join(ANTHROPIC_JSON), True))
    [logged] = metadata(last).values()
    assert (logged["input_tokens"], logged["output_tokens"]) == (3, 4)


def message_start(sse: bytes) -> dict:
    event, data = sse.split(b"\n\n")[0].split(b"\n")
    assert event == b"event: message_start"
    return orjson.loads(data.removeprefix(b"data: "))["message"]


def test_a_translated_stream_starts_with_the_asked_model_and_the_estimate():
    """Until the provider's usage arrives, message_start carries the gateway's estimate of the
    prompt (8 tokens for ASKED), and the model the client asked for."""
    exchange = exchange_for(CHAT_COMPLETIONS)
    chunk = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
    _, (first, _) = answered(
        exchange, {**ASKED, "stream": True}, 200, "text/event-stream", [chunk, b""]
    )
    started = message_start(first.response_body.response.body_mutation.body)
    assert (started["model"], started["usage"]["input_tokens"]) == ("m", 8)


RESPONSES = "  - model: openai/gpt-5.2-codex\n    access_key: k\n"
REASONED = orjson.dumps(
    {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "enc"},
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Hi", "annotations": []}],
            },
        ],
        "usage": {"input_tokens": 5, "output_tokens": 1},
    }
)


def test_responses_reasoning_goes_back_to_the_provider_that_wrote_it():
    """The encrypted reasoning of one answer reaches the same provider and model on the next
    turn, through the thinking block's signature."""
    _, (answer,) = answered(exchange_for(RESPONSES), ASKED, 200, "application/json", [REASONED])
    message = orjson.loads(answer.response_body.response.body_mutation.body)
    assert message["model"] == "m"
    next_turn = {
        **ASKED,
        "messages": [
            *ASKED["messages"],
            {"role": "assistant", "content": message["content"]},
            {"role": "user", "content": "more"},
        ],
    }
    sent = routed(exchange_for(RESPONSES), next_turn).body_mutation.body
    assert orjson.loads(sent)["input"][1] == {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [],
        "encrypted_content": "enc",
    }


NO_FAILOVER = "listener: {failover: false}\n"
TEAMS = (
    "  - name: team-a\n    model: openai/gpt-5.2-codex\n    access_key: sk-a\n"
    "  - name: team-b\n    model: openai/gpt-5.2-codex\n    access_key: sk-b\n"
)


@pytest.mark.parametrize("team_b_key", ["sk-b", "sk-a"], ids=["own keys", "one key"])
def test_responses_reasoning_goes_back_only_to_the_entry_that_wrote_it(team_b_key):
    """Two entries for one model (two teams): reasoning from team A's answer goes back to
    team A, never to OpenAI through team B's entry, with its own key (another account) or
    the same one (the entry's name is part of the reasoning's origin)."""
    teams = TEAMS.replace("sk-b", team_b_key)
    asked = {**ASKED, "model": "team-a"}
    _, (answer,) = answered(exchange_for(teams), asked, 200, "application/json", [REASONED])
    content = orjson.loads(answer.response_body.response.body_mutation.body)["content"]
    history = [*ASKED["messages"], {"role": "assistant", "content": content}]
    next_turn = {**ASKED, "messages": [*history, {"role": "user", "content": "more"}]}
    for team, key, kinds in [
        ("team-a", "sk-a", ["message", "reasoning", "message", "message"]),
        ("team-b", team_b_key, ["message", "message", "message"]),
    ]:
        # Translated where the request leaves the gateway, without failover (with it, on the
        # failover attempt: tests/unit/proxy/test_attempt.py).
        sent = routed(exchange_for(teams, NO_FAILOVER), {**next_turn, "model": team})
        headers = {o.header.key: o.header.raw_value for o in sent.header_mutation.set_headers}
        assert headers["authorization"] == f"Bearer {key}".encode()
        assert [i["type"] for i in orjson.loads(sent.body_mutation.body)["input"]] == kinds


def routed(
    exchange: Exchange,
    body: dict,
    path: str = "/v1/messages",
    credentials: dict[str, str] | None = None,
):
    """The request body phase's reply (CommonResponse) for `body`."""
    headers = {":path": path, ":method": "POST", "content-type": "application/json"}
    headers.update(credentials or {})
    exchange.on_request_headers(headers, False)
    reply = ProcessingResponse.parse(asyncio.run(exchange.on_request_body(orjson.dumps(body))))
    return reply.request_body.response


def headers_set(reply) -> dict[str, str]:
    """The headers a CommonResponse sets, by name."""
    return {o.header.key: o.header.raw_value.decode() for o in reply.header_mutation.set_headers}


def test_a_translated_request_gets_exactly_these_headers_upstream():
    """The whole set, on purpose: its cluster, path, original path, content type, an
    uncompressed answer (accept-encoding: identity), the provider's key and the new length."""
    reply = routed(exchange_for(CHAT_COMPLETIONS), ASKED, "/v1/messages?beta=true")
    assert headers_set(reply) == {
        "x-extproc-cluster": "api_groq_com_443",
        ":path": "/openai/v1/chat/completions",
        "x-envoy-original-path": "/v1/messages?beta=true",
        "content-type": "application/json",
        "accept-encoding": "identity",
        "authorization": "Bearer k",
        "content-length": str(len(reply.body_mutation.body)),
    }


def test_count_tokens_for_a_translated_provider_is_answered_here():
    exchange = exchange_for(CHAT_COMPLETIONS)
    headers = {":path": "/v1/messages/count_tokens", ":method": "POST"}
    exchange.on_request_headers(headers, False)
    reply = ProcessingResponse.parse(asyncio.run(exchange.on_request_body(orjson.dumps(ASKED))))
    assert (reply.immediate_response.status.code, reply.immediate_response.body) == (
        200,
        b'{"input_tokens":8}',
    )
    assert exchange.finished


def test_the_decision_is_logged_at_debug_level(caplog):
    caplog.set_level(logging.DEBUG, logger="extproc")
    routed(exchange_for(CHAT_COMPLETIONS), ASKED)
    assert [r.getMessage() for r in caplog.records if r.name == "extproc"] == [
        "/v1/messages m → groq/llama-3.3-70b-versatile (default)"
    ]


JSON_TYPE = {"content-type": "application/json"}
LONG_TOOL = "mcp__server__" + "t" * 60
LONG_TOOL_SENT_AS = provider_tool_name(LONG_TOOL, 64)
"""A tool literally named like that would reach the provider as the same function."""


@pytest.mark.parametrize(
    ("headers", "body", "status", "message"),
    [
        (
            {"content-encoding": "gzip", **JSON_TYPE},
            ASKED,
            415,
            "Content-Encoding 'gzip' is not accepted; send the JSON body uncompressed.",
        ),
        ({}, {"messages": []}, 400, "model: field required (a string)"),
        ({}, {**ASKED, "model": 5}, 400, "model: field required (a string)"),
        ({}, {**ASKED, "messages": {"role": "user"}}, 400, "messages: must be a list"),
        (
            {},
            {**ASKED, "model": "m" * 257},
            400,
            "model: must be at most 256 characters, without control characters",
        ),
        (
            {},
            {**ASKED, "messages": [{"role": "robot", "content": "hi"}]},
            400,
            "messages.0.role: unexpected value 'robot'",
        ),
        (
            {},
            {
                **ASKED,
                "tools": [
                    {"name": name, "input_schema": {"type": "object"}}
                    for name in (LONG_TOOL, LONG_TOOL_SENT_AS)
                ],
            },
            400,
            f"tools: {LONG_TOOL!r} and {LONG_TOOL_SENT_AS!r} would both reach the provider as "
            f"{LONG_TOOL_SENT_AS!r} (tool names longer than 64 characters, or with characters "
            "other than A-Z a-z 0-9 _ -, are shortened); rename one of them",
        ),
        ({":method": "GET"}, ASKED, 400, "/v1/messages takes POST"),
        ({}, None, 400, "the request has no body"),
        (
            {"content-type": "text/plain; charset=utf-8"},
            ASKED,
            415,
            "content-type must be application/json, not 'text/plain'.",
        ),
    ],
    ids=[
        "compressed",
        "no model",
        "a model that is no string",
        "messages no list",
        "long model",
        "untranslatable",
        "colliding tool names",
        "not POST",
        "no body",
        "not JSON",
    ],
)
def test_refused_requests_say_why(headers, body, status, message):
    """`body` None: the headers end the request."""
    exchange = exchange_for(CHAT_COMPLETIONS)
    headers = {":path": "/v1/messages", ":method": "POST", **headers}
    with pytest.raises(GatewayError) as refused:
        exchange.on_request_headers(headers, body is None)
        asyncio.run(exchange.on_request_body(orjson.dumps(body)))
    error = refused.value
    assert (error.status, error.error_type, error.message) == (
        status,
        "invalid_request_error",
        message,
    )


def test_envoys_own_error_reply_ends_the_exchange():
    """A local reply (x-extproc-local-reply) is already in Anthropic's format: the sidecar lets
    it go and needs nothing more from Envoy, even for a request it translated."""
    exchange = exchange_for(CHAT_COMPLETIONS)
    routed(exchange, ASKED)
    reply = ProcessingResponse.parse(
        exchange.on_response_headers({":status": "503", "x-extproc-local-reply": "1"})
    )
    assert reply.response_headers.response.header_mutation is None
    assert reply.mode_override is None
    assert exchange.finished


def test_a_2xx_error_answer_is_answered_with_its_own_status():
    exchange = exchange_for(CHAT_COMPLETIONS)
    _, (last,) = answered(exchange, ASKED, 200, "application/json", [b'{"object": "list"}'])
    answer = last.immediate_response
    assert (answer.status.code, orjson.loads(answer.body)["error"]) == (
        502,
        {"type": "api_error", "message": "upstream answer has no choices"},
    )


def test_log_tokens_writes_under_the_configured_namespace():
    exchange = exchange_for("  - model: anthropic/claude-x\n    access_key: k\n")
    exchange.runtime.config = parse(
        "listener: {log_tokens: true}\nsidecar: {metadata_namespace: acme.gw}\n"
        "llm_providers:\n  - model: anthropic/claude-x\n    access_key: k\n"
    )
    _, (last,) = answered(exchange, ASKED, 200, "application/json", [b"".join(ANTHROPIC_JSON)])
    assert metadata(last) == {"acme.gw": {"input_tokens": 3, "output_tokens": 4}}


def test_a_phase_the_filter_should_not_send_is_refused():
    """Trailers (decoded as a nameless phase) mean the filter's processing_mode is wrong."""
    with pytest.raises(GatewayError) as refused:
        asyncio.run(exchange_for(CHAT_COMPLETIONS).handle(Phase("")))
    assert (refused.value.error_type, refused.value.message) == (
        "api_error",
        "unexpected ext_proc phase; check the filter's processing_mode",
    )


GATED = "gateway_keys: [gk-team-0123456789]\n"


@pytest.mark.parametrize("phase", ["request_body", "response_headers", "response_body"])
def test_a_stream_that_does_not_start_with_the_request_headers_is_refused(phase):
    """A body sent first skipped the gateway-key check, and its reply set the provider's key:
    anyone reaching the gRPC port could read it (issue 23)."""
    exchange = exchange_for(CHAT_COMPLETIONS, GATED)
    first = Phase(phase, {":status": "200"}, body=orjson.dumps(ASKED), end_of_stream=True)
    with pytest.raises(GatewayError) as refused:
        asyncio.run(exchange.handle(first))
    assert (refused.value.status, refused.value.error_type, refused.value.message) == (
        500,
        "api_error",
        f"ext_proc {phase} came before the request's headers",
    )
    assert exchange.decision is None


@pytest.mark.parametrize(
    ("credentials", "accepted"),
    [
        ({"x-api-key": "gk-team-0123456789"}, True),
        ({"authorization": "Bearer gk-team-0123456789"}, True),
        ({"x-api-key": "gk-team-0123456789", "authorization": "Bearer sk-ant-client"}, True),
        ({"x-api-key": "sk-ant-client", "authorization": "Bearer gk-team-0123456789"}, True),
        ({"x-api-key": "sk-ant-client"}, False),
        ({"x-api-key": "sk-ant-client", "authorization": "Bearer sk-ant-other"}, False),
        ({}, False),
    ],
)
def test_gateway_keys_guard_every_request(credentials, accepted):
    exchange = exchange_for(CHAT_COMPLETIONS, GATED)
    if accepted:
        mutation = routed(exchange, ASKED, credentials=credentials).header_mutation
        # The gateway key goes no further: the client's credentials are removed and the
        # provider's own key is set.
        assert {"x-api-key", "authorization"} <= set(mutation.remove_headers)
        upstream = {o.header.key: o.header.raw_value.decode() for o in mutation.set_headers}
        assert upstream["authorization"] == "Bearer k"
        return
    headers = {":path": "/v1/messages", ":method": "POST", **credentials}
    with pytest.raises(GatewayError) as refused:
        exchange.on_request_headers(headers, False)
    error = refused.value
    assert (error.status, error.error_type, error.message) == (
        401,
        "authentication_error",
        "This gateway needs one of its keys in x-api-key or Authorization: Bearer.",
    )


@pytest.mark.parametrize(
    ("provider", "log_tokens", "finished"),
    [
        ("  - model: anthropic/claude-x\n    access_key: k\n", False, True),
        ("  - model: anthropic/claude-x\n    access_key: k\n", True, False),
        (CHAT_COMPLETIONS, False, False),
    ],
    ids=["anthropic", "anthropic, log_tokens", "translated"],
)
def test_a_routed_request_ends_the_exchange_unless_its_answer_is_read(
    provider, log_tokens, finished
):
    """`finished` tells the server to end the gRPC stream: Envoy then goes on without the
    sidecar. Only an answer the sidecar translates or counts needs it to stay."""
    listener = "listener: {log_tokens: true}\n" if log_tokens else ""
    exchange = exchange_for(provider, listener)
    routed(exchange, ASKED)
    assert exchange.finished is finished


def test_responses_reasoning_never_goes_out_once_its_entrys_key_or_base_url_changes():
    """The same entry on another key (another account, after a config edit) or another
    base_url (another server): the reasoning its old account wrote no longer goes out."""
    entry = "  - name: team-a\n    model: openai/gpt-5.2-codex\n    access_key: sk-a\n"
    asked = {**ASKED, "model": "team-a"}
    _, (answer,) = answered(exchange_for(entry), asked, 200, "application/json", [REASONED])
    content = orjson.loads(answer.response_body.response.body_mutation.body)["content"]
    history = [*ASKED["messages"], {"role": "assistant", "content": content}]
    next_turn = {**asked, "messages": [*history, {"role": "user", "content": "more"}]}
    elsewhere = entry + "    base_url: https://proxy.example/v1\n"
    for edited, kinds in [
        (entry, ["message", "reasoning", "message", "message"]),
        (entry.replace("sk-a", "sk-c"), ["message", "message", "message"]),
        (elsewhere, ["message", "message", "message"]),
    ]:
        sent = routed(exchange_for(edited, NO_FAILOVER), next_turn)
        assert [i["type"] for i in orjson.loads(sent.body_mutation.body)["input"]] == kinds


def test_a_native_body_with_the_model_first_is_spliced_byte_for_byte():
    """Only the model's value changes: the client's whitespace and key order stay."""
    exchange = exchange_for("  - model: anthropic/claude-x\n    access_key: k\n")
    exchange.on_request_headers({":path": "/v1/messages", ":method": "POST"}, False)
    raw = b'{"model": "asked",  "max_tokens": 5, "messages": [ ]}'
    reply = ProcessingResponse.parse(asyncio.run(exchange.on_request_body(raw)))
    sent = reply.request_body.response.body_mutation.body
    assert sent == b'{"model": "claude-x",  "max_tokens": 5, "messages": [ ]}'


def test_count_tokens_answered_here_carries_the_decision():
    """Envoy's access log reads the decision from the local answer's metadata too."""
    exchange = exchange_for(CHAT_COMPLETIONS)
    exchange.on_request_headers({":path": "/v1/messages/count_tokens", ":method": "POST"}, False)
    reply = ProcessingResponse.parse(asyncio.run(exchange.on_request_body(orjson.dumps(ASKED))))
    decided = reply.dynamic_metadata.fields["envoy.filters.http.ext_proc"].struct_value.fields
    assert decided["provider"].string_value == "groq/llama-3.3-70b-versatile"
    assert decided["source"].string_value == "default"


def test_a_body_of_an_answer_nobody_reads_is_refused_as_an_api_error():
    """A native answer is not read (no log_tokens): a body of it means a wrong processing_mode."""
    exchange = exchange_for("  - model: anthropic/claude-x\n    access_key: k\n")
    routed(exchange, ASKED)
    with pytest.raises(GatewayError) as refused:
        exchange.on_response_body(b"{}", True)
    assert (refused.value.status, refused.value.error_type, refused.value.message) == (
        500,
        "api_error",
        "unexpected response body; check processing_mode",
    )


def test_a_path_it_does_not_serve_is_named_up_to_200_characters():
    exchange = exchange_for("  - model: openai/gpt-4.1\n    access_key: k\n")
    path = "/v1/" + "p" * 300
    with pytest.raises(GatewayError) as refused:
        exchange.on_request_headers({":path": path, ":method": "GET"}, True)
    assert refused.value.message.startswith(f"The gateway does not serve {path[:200]}: it routes")


def test_a_model_name_of_the_longest_length_is_taken():
    reply = routed(exchange_for(CHAT_COMPLETIONS), {**ASKED, "model": "m" * 256})
    assert orjson.loads(reply.body_mutation.body)["model"] == "llama-3.3-70b-versatile"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[]", "The request body must be a JSON object."),
        # Valid JSON to the routing parse (it leaves `system` raw), not to the whole one:
        (
            b'{"model": "m", "messages": [], "system": "\xff"}',
            "The request body is not valid JSON: ",
        ),
    ],
)
def test_a_body_that_is_no_json_object_is_refused_with_its_reason(raw, message):
    exchange = exchange_for(CHAT_COMPLETIONS)
    exchange.on_request_headers({":path": "/v1/messages", ":method": "POST"}, False)
    with pytest.raises(GatewayError) as refused:
        asyncio.run(exchange.on_request_body(raw))
    assert (refused.value.status, refused.value.error_type) == (400, "invalid_request_error")
    assert refused.value.message.startswith(message)


def test_a_streams_counts_are_logged_once_at_its_end():
    """The counts come in a chunk before `[DONE]`: they are logged (and their cost counted)
    with the last chunk only."""
    exchange = exchange_for(
        "  - model: groq/llama-3.3-70b-versatile\n    access_key: k\n"
        "    price: {input: 1.0, output: 2.0}\n"
    )
    chunk = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}\n\n'  # fmt: skip
    usage = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1}}\n\n'
    _, replies = answered(
        exchange,
        {**ASKED, "stream": True},
        200,
        "text/event-stream",
        [chunk, usage, b"data: [DONE]\n\n"],
    )
    assert [metadata(reply) for reply in replies[:2]] == [{}, {}]
    [logged] = metadata(replies[2]).values()
    assert (logged["input_tokens"], logged["output_tokens"]) == (5, 1)
    cost = exchange.runtime.metrics.cost.labels("groq/llama-3.3-70b-versatile", "")
    assert cost._value.get() == pytest.approx(7e-6)


def test_an_entrys_max_tokens_caps_the_translated_request():
    capped = CHAT_COMPLETIONS + "    max_tokens: 100\n"
    reply = routed(exchange_for(capped), {**ASKED, "max_tokens": 5000})
    assert orjson.loads(reply.body_mutation.body)["max_tokens"] == 100


def test_count_tokens_for_an_anthropic_provider_goes_to_it_alone():
    """Its own count, off any failover chain (a later candidate may count otherwise)."""
    exchange = exchange_for(
        "  - model: anthropic/claude-x\n    access_key: k\n"
        "    fallbacks: [groq/llama-3.3-70b-versatile]\n" + CHAT_COMPLETIONS
    )
    reply = routed(exchange, ASKED, "/v1/messages/count_tokens")
    assert headers_set(reply) == {
        "x-extproc-cluster": "api_anthropic_com_443",
        ":path": "/v1/messages/count_tokens",
        "x-envoy-original-path": "/v1/messages/count_tokens",
        "accept-encoding": "identity",
        "x-api-key": "k",
        "content-length": str(len(reply.body_mutation.body)),
        "anthropic-version": "2023-06-01",
    }
    assert orjson.loads(reply.body_mutation.body) == {**ASKED, "model": "claude-x"}


ANTHROPIC_ONLY = "  - model: anthropic/claude-x\n    access_key: k\n"


@pytest.mark.parametrize(
    ("providers", "preamble", "mode"),
    [
        (ANTHROPIC_ONLY, "", ProcessingModeHeaderSendMode.SKIP),
        (ANTHROPIC_ONLY, "listener: {log_tokens: true}\n", ProcessingModeHeaderSendMode.SEND),
        (ANTHROPIC_ONLY + CHAT_COMPLETIONS, "", ProcessingModeHeaderSendMode.SEND),
    ],
    ids=["nothing reads answers", "log_tokens", "a translated provider"],
)
def test_envoy_sends_an_answers_headers_only_where_the_sidecar_reads_answers(
    providers, preamble, mode
):
    """One round trip less per request when no answer is ever read (Config.reads_responses)."""
    headers = {":path": "/v1/messages", ":method": "POST", "content-type": "application/json"}
    reply = ProcessingResponse.parse(
        exchange_for(providers, preamble).on_request_headers(headers, False)
    )
    assert reply.mode_override.response_header_mode == mode


def test_a_translated_answer_ends_the_exchange_with_its_last_chunk():
    exchange = exchange_for(CHAT_COMPLETIONS)
    routed(exchange, {**ASKED, "stream": True})
    exchange.on_response_headers({":status": "200", "content-type": "text/event-stream"})
    chunk = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
    exchange.on_response_body(chunk, False)
    assert exchange.finished is False
    exchange.on_response_body(b"data: [DONE]\n\n", True)
    assert exchange.finished is True


def test_a_translated_answers_counts_go_under_the_configured_namespace():
    exchange = exchange_for(CHAT_COMPLETIONS, "sidecar: {metadata_namespace: acme.gw}\n")
    completion = orjson.dumps(
        {
            "id": "c",
            "choices": [{"index": 0, "message": {"content": "Hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1},
        }
    )
    _, (last,) = answered(exchange, ASKED, 200, "application/json", [completion])
    assert metadata(last) == {
        "acme.gw": {
            "input_tokens": 5,
            "output_tokens": 1,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        }
    }


def test_count_tokens_with_a_trailing_slash_is_counted_too():
    exchange = exchange_for(CHAT_COMPLETIONS)
    headers = {":path": "/v1/messages/count_tokens/", ":method": "POST"}
    exchange.on_request_headers(headers, False)
    reply = ProcessingResponse.parse(asyncio.run(exchange.on_request_body(orjson.dumps(ASKED))))
    assert reply.immediate_response.body == b'{"input_tokens":8}'


def test_a_native_body_asking_for_thinking_keeps_its_budget_without_a_decided_effort():
    """No effort decided: the client's own thinking request is spliced through untouched."""
    exchange = exchange_for("  - model: anthropic/claude-haiku-4-5\n    access_key: k\n")
    body = {
        "model": "anthropic/claude-haiku-4-5",
        "max_tokens": 4096,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [{"role": "user", "content": "hi"}],
    }
    reply = routed(exchange, body)
    sent = orjson.loads(reply.body_mutation.body)
    assert sent == {**body, "model": "claude-haiku-4-5"}


def test_a_body_with_a_message_that_is_no_object_still_loses_foreign_thinking():
    """The provider refuses the stray message with its own error; the gateway must not fail
    first while it drops another provider's thinking block."""
    exchange = exchange_for("  - model: anthropic/claude-haiku-4-5\n    access_key: k\n")
    foreign = {"type": "thinking", "thinking": "hmm", "signature": ""}
    body = {
        "model": "anthropic/claude-haiku-4-5",
        "max_tokens": 5,
        "messages": [
            "stray",
            {"role": "assistant", "content": [foreign, {"type": "text", "text": "a"}]},
            {"role": "user", "content": "and?"},
        ],
    }
    sent = orjson.loads(routed(exchange, body).body_mutation.body)
    assert sent["messages"] == [
        "stray",
        {"role": "assistant", "content": [{"type": "text", "text": "a"}]},
        {"role": "user", "content": "and?"},
    ]


def test_a_messages_request_without_a_body_is_refused_through_the_phases():
    """As the server hands the headers over: their end of stream is the request's end."""
    exchange = exchange_for(CHAT_COMPLETIONS)
    headers = {":path": "/v1/messages", ":method": "POST", "content-type": "application/json"}
    with pytest.raises(GatewayError) as refused:
        asyncio.run(exchange.handle(Phase("request_headers", headers, end_of_stream=True)))
    assert (refused.value.status, refused.value.message) == (400, "the request has no body")


def test_a_routed_requests_decision_goes_under_the_configured_namespace():
    exchange = exchange_for(CHAT_COMPLETIONS, "sidecar: {metadata_namespace: acme.gw}\n")
    exchange.on_request_headers({":path": "/v1/messages", ":method": "POST"}, False)
    reply = ProcessingResponse.parse(asyncio.run(exchange.on_request_body(orjson.dumps(ASKED))))
    decided = reply.dynamic_metadata.to_dict()
    assert list(decided) == ["acme.gw"]
    assert decided["acme.gw"]["provider"] == "groq/llama-3.3-70b-versatile"


def test_the_debug_line_names_the_route_that_decided(caplog):
    caplog.set_level(logging.DEBUG, logger="extproc")
    rule = "rules: [{name: everything, model: groq/llama-3.3-70b-versatile, when: {}}]\n"
    routed(exchange_for(CHAT_COMPLETIONS, rule), ASKED)
    assert [r.getMessage() for r in caplog.records if r.name == "extproc"] == [
        "/v1/messages m → groq/llama-3.3-70b-versatile (rule, route everything)"
    ]
