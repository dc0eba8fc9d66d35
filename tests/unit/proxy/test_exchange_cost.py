"""An exchange's answer metadata: token counts with their cost, and the cost counter."""

from __future__ import annotations

import asyncio

import orjson
from envoy_data_plane.envoy.service.ext_proc.v3 import ProcessingResponse

from extproc.app import build_runtime
from extproc.config import parse
from extproc.decisions.routing import RouterStage
from extproc.proxy.exchange import Exchange
from extproc.proxy.wire import Phase

CONFIG = """\
listener: {log_tokens: true, failover: false}
llm_providers:
  - model: anthropic/claude-haiku-4-5
    access_key: k
  - model: groq/llama-3.3-70b-versatile
    access_key: k
    price: {input: 0.5, output: 0.75}
  - model: mistral/mistral-large-latest
    access_key: k
"""
ASKED = {"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def fields(reply: ProcessingResponse) -> dict:
    """The dynamic metadata a reply sets, as plain values."""
    if not reply.dynamic_metadata:
        return {}
    [namespace] = reply.dynamic_metadata.fields.values()
    return {
        key: value.number_value if value.string_value is None else value.string_value
        for key, value in namespace.struct_value.fields.items()
    }


def exchange(runtime, model: str, answer: list[bytes], session: str = "") -> tuple[dict, dict]:
    """The metadata of the request-body reply and of the last answer chunk's reply."""
    headers = {":path": "/v1/messages", ":method": "POST", "content-type": "application/json"}
    if session:
        headers["x-claude-code-session-id"] = session
    phases = [
        Phase("request_headers", headers),
        Phase("request_body", body=orjson.dumps({"model": model, **ASKED}), end_of_stream=True),
        Phase("response_headers", {":status": "200", "content-type": "application/json"}),
        *(
            Phase("response_body", body=chunk, end_of_stream=i == len(answer) - 1)
            for i, chunk in enumerate(answer)
        ),
    ]
    current = Exchange(runtime)

    async def send() -> list[ProcessingResponse]:
        return [ProcessingResponse.parse(await current.handle(phase)) for phase in phases]

    _, routed, _, *chunks = asyncio.run(send())
    return fields(routed), fields(chunks[-1])


def runtime():
    config = parse(CONFIG)
    return build_runtime(config, RouterStage(config.routing))


ANTHROPIC = orjson.dumps(
    {
        "type": "message",
        "usage": {
            "input_tokens": 100,
            "output_tokens": 40,
            "cache_read_input_tokens": 5000,
            "cache_creation_input_tokens": 1000,
        },
    }
)
CHAT = orjson.dumps(
    {
        "id": "c1",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": 1200,
            "completion_tokens": 30,
            "prompt_tokens_details": {"cached_tokens": 1000},
        },
    }
)


def test_a_native_answer_with_cache_reads_and_writes():
    """claude-haiku-4-5: $1 in, $5 out, $0.10 a cache read, $1.25 a cache write:
    (100 × 1 + 40 × 5 + 5,000 × 0.10 + 1,000 × 1.25) / 10⁶ = $0.00205."""
    gateway = runtime()
    _, answered = exchange(gateway, "anthropic/claude-haiku-4-5", [ANTHROPIC[:30], ANTHROPIC[30:]])
    assert answered == {
        "input_tokens": 100,
        "output_tokens": 40,
        "cache_read_input_tokens": 5000,
        "cache_creation_input_tokens": 1000,
        "cost_usd": 0.00205,
    }
    cost = gateway.metrics.cost.labels("anthropic/claude-haiku-4-5", "")._value.get()
    assert cost == 0.00205


def test_a_translated_answer_splits_the_cached_prompt_tokens_out():
    """Chat Completions' prompt_tokens include the cached ones: 200 uncached at $0.50 and,
    with no cache price given, 1,000 cached at the same $0.50; 30 out at $0.75:
    (200 × 0.5 + 1,000 × 0.5 + 30 × 0.75) / 10⁶ = $0.0006225."""
    _, answered = exchange(runtime(), "groq/llama-3.3-70b-versatile", [CHAT])
    assert answered == {
        "input_tokens": 200,
        "output_tokens": 30,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 0,
        "cost_usd": 0.0006225,
    }


def test_a_model_without_a_price_gets_its_tokens_but_no_cost():
    gateway = runtime()
    _, answered = exchange(gateway, "mistral/mistral-large-latest", [CHAT])
    assert "cost_usd" not in answered and answered["input_tokens"] == 200
    assert 'extproc_cost_usd_total{provider="mistral' not in gateway.metrics.exposition().decode()


def test_the_first_request_on_another_model_names_the_model_the_session_left():
    gateway = runtime()
    answer = [ANTHROPIC]
    first, _ = exchange(gateway, "anthropic/claude-haiku-4-5", answer, session="s1")
    other_session, _ = exchange(gateway, "groq/llama-3.3-70b-versatile", [CHAT], session="s2")
    moved, _ = exchange(gateway, "groq/llama-3.3-70b-versatile", [CHAT], session="s1")
    stayed, _ = exchange(gateway, "groq/llama-3.3-70b-versatile", [CHAT], session="s1")
    assert "switched_from" not in first and "switched_from" not in other_session
    assert moved["switched_from"] == "anthropic/claude-haiku-4-5"
    assert "switched_from" not in stayed


def test_a_native_answer_nobody_reads_is_priced_for_usage_lua():
    """Without log_tokens the sidecar lets the answer go: Envoy's Lua filter counts it, at
    the price the request's metadata names (USD per million: in, out, cache read, write)."""
    config = parse(CONFIG.replace("log_tokens: true", "log_tokens: false"))
    gateway = build_runtime(config, RouterStage(config.routing))
    headers = {":path": "/v1/messages", ":method": "POST", "content-type": "application/json"}
    current = Exchange(gateway)
    current.on_request_headers(headers, False)
    body = orjson.dumps({"model": "anthropic/claude-haiku-4-5", **ASKED})
    decided = fields(ProcessingResponse.parse(asyncio.run(current.on_request_body(body))))
    assert decided["price"] == "1,5,0.1,1.25"


def decided_without_log_tokens(model: str, session: str = ""):
    """The decision metadata of one request, the sidecar reading no answer it needn't."""
    unpriced = "  - model: anthropic/claude-nobody-knows-9\n    access_key: k\n"
    config = parse(CONFIG.replace("log_tokens: true", "log_tokens: false") + unpriced)
    current = Exchange(build_runtime(config, RouterStage(config.routing)))
    headers = {":path": "/v1/messages", ":method": "POST", "content-type": "application/json"}
    if session:
        headers["x-claude-code-session-id"] = session
    current.on_request_headers(headers, False)
    body = orjson.dumps({"model": model, **ASKED})
    return fields(ProcessingResponse.parse(asyncio.run(current.on_request_body(body))))


def test_usage_lua_gets_the_session_and_an_empty_price_for_a_model_without_one():
    """Its counts are reported to the session's record, and logged without a cost."""
    decided = decided_without_log_tokens("anthropic/claude-nobody-knows-9", session="s9")
    assert (decided["price"], decided["session"]) == ("", "s9")


def test_an_answer_the_sidecar_translates_itself_gets_nothing_for_usage_lua():
    """The sidecar counts and prices it: Envoy's Lua filter must not count it again."""
    decided = decided_without_log_tokens("groq/llama-3.3-70b-versatile", session="s9")
    assert "price" not in decided and "session" not in decided
    assert decided["provider"] == "groq/llama-3.3-70b-versatile"


def test_a_native_error_answer_is_not_read_and_ends_the_exchange():
    """With log_tokens, a native answer is read for its counts, but an error has none."""
    current = Exchange(runtime())
    headers = {":path": "/v1/messages", ":method": "POST", "content-type": "application/json"}
    current.on_request_headers(headers, False)
    body = orjson.dumps({"model": "anthropic/claude-haiku-4-5", **ASKED})
    asyncio.run(current.on_request_body(body))
    reply = ProcessingResponse.parse(current.on_response_headers({":status": "429"}))
    assert reply.mode_override is None and current.finished


def test_an_answer_the_sidecar_reads_reaches_its_sessions_record():
    """The status line shows the latest answer's tokens and the session's cost: an answer
    the sidecar reads itself reports them (usage.lua reports the others)."""
    gateway = runtime()
    exchange(gateway, "groq/llama-3.3-70b-versatile", [CHAT], session="s1")
    record = gateway.sessions.get("s1")
    assert record is not None
    assert (record.input_tokens, record.output_tokens, record.cost_usd) == (200, 30, 0.0006225)


def test_the_logged_cost_is_rounded_to_eight_places():
    """$0.123 per million input tokens, 7 tokens in and none out: $0.000000861, logged as
    $0.00000086."""
    config = parse(CONFIG.replace("{input: 0.5, output: 0.75}", "{input: 0.123, output: 1}"))
    usage = {"prompt_tokens": 7, "completion_tokens": 0}
    answer = orjson.dumps({**orjson.loads(CHAT), "usage": usage})
    gateway = build_runtime(config, RouterStage(config.routing))
    _, answered = exchange(gateway, "groq/llama-3.3-70b-versatile", [answer])
    assert answered["cost_usd"] == 8.6e-07
