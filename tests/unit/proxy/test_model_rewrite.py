"""Model rewrites keep every other field of the body, whichever way they are made.

Routing reads only a few fields of the body (`_parse_body`); every rewrite that can't splice
the model in place must rebuild from the whole body, not from those fields.
"""

from __future__ import annotations

import asyncio

import msgspec
import orjson
import pytest
from envoy_data_plane.envoy.extensions.filters.http.ext_proc.v3 import ProcessingModeBodySendMode
from envoy_data_plane.envoy.service.ext_proc.v3 import ProcessingResponse

from extproc.app import build_runtime
from extproc.config import parse
from extproc.decisions.routing import RouterStage
from extproc.errors import GatewayError
from extproc.proxy.exchange import Exchange, _parse_body, rewrite_model
from extproc.translate import signatures

OTHER_FIELDS = {
    "max_tokens": 5,
    "system": [{"type": "text", "text": "be brief"}],
    "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
    "metadata": {"user_id": "u"},
    "stream": True,
}


def rewrite(raw: bytes, model: str) -> bytes:
    body, span = _parse_body(raw)
    return b"".join(rewrite_model(raw, body, model, span))


def rewritten(body: dict) -> dict:
    return orjson.loads(rewrite(orjson.dumps(body), "routed-model"))


def test_splice_when_model_comes_first():
    raw = orjson.dumps({"model": "asked", "messages": [], **OTHER_FIELDS})
    assert rewrite(raw, "routed-model") == raw.replace(b'"asked"', b'"routed-model"')
    assert rewrite(memoryview(raw), "x") == raw.replace(b'"asked"', b'"x"')


def test_model_elsewhere_is_re_serialized_with_every_field():
    body = {**OTHER_FIELDS, "messages": [{"role": "user", "content": "hi"}], "model": "asked"}
    assert rewritten(body) == {**body, "model": "routed-model"}


def test_foreign_thinking_is_dropped_and_every_other_field_kept():
    thinking = {"type": "thinking", "thinking": "hmm", "signature": ""}
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [thinking, {"type": "text", "text": "a"}]},
        {"role": "user", "content": "and?"},
    ]
    out = rewritten({"model": "asked", "messages": messages, **OTHER_FIELDS})
    assert out["messages"] == [  # the other messages as they came, their text included
        messages[0],
        {"role": "assistant", "content": [{"type": "text", "text": "a"}]},
        messages[2],
    ]
    assert {k: out[k] for k in OTHER_FIELDS} == OTHER_FIELDS
    assert out["model"] == "routed-model"


def test_thinking_signed_by_this_gateway_is_dropped_too():
    """A turn an OpenAI-format provider answered may carry thinking blocks whose signature
    holds that provider's state (translate/signatures.py): Anthropic would refuse them."""
    ours = {"type": "thinking", "thinking": "hmm", "signature": signatures.sign({"id": "rs_1"})}
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [ours, {"type": "text", "text": "a"}]},
        {"role": "user", "content": "and?"},
    ]
    out = rewritten({"model": "asked", "messages": messages})
    assert out["messages"][1] == {"role": "assistant", "content": [{"type": "text", "text": "a"}]}


def test_routing_fields_only():
    body = {"model": "m", "messages": [], "output_config": {"format": {}}, **OTHER_FIELDS}
    view, span = _parse_body(orjson.dumps(body))
    assert span is not None
    assert set(view) == {
        "model",
        "messages",
        "tools",
        "output_config",
        "max_tokens",
        "system",
        "stream",
    }
    assert msgspec.json.decode(view["system"]) == OTHER_FIELDS["system"], "kept raw, for rules"
    assert view["messages"] == [] and view["output_config"] == {"format": {}}
    assert view["tools"] == [{"type": None, "name": "Bash"}]  # its schema is not built


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"model": "m", "messages": [], "tools": {}}', "tools"),
        (b'{"model": "m", "messages": null}', "messages"),
        (b'"just a string"', "JSON object"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "\xff"}]}', "not valid JSON"),
        (b'{"model": "m", "system": [1, 2,]}', "not valid JSON"),
    ],
)
def test_bad_bodies_name_what_is_wrong(raw, words):
    with pytest.raises(GatewayError) as raised:
        _parse_body(raw)
    assert words in raised.value.message


def test_fields_routing_does_not_read_go_on_as_received():
    """Their text is not decoded here (that would cost more than the whole parse); the
    provider validates it. Their JSON syntax is still checked above."""
    raw = b'{"model": "m", "messages": [], "system": "\xff"}'
    assert rewrite(raw, "n") == raw.replace(b'"m"', b'"n"', 1)


def test_a_body_that_already_names_the_model_is_not_sent_back():
    raw = orjson.dumps({"model": "routed-model", "messages": [], **OTHER_FIELDS})
    body, span = _parse_body(raw)
    assert rewrite_model(raw, body, "routed-model", span) is None


@pytest.mark.parametrize(("asked", "rewritten_body"), [("claude-sonnet-4-5", False), ("x", True)])
def test_the_body_reply_carries_a_body_only_when_it_changed(asked, rewritten_body):
    config = parse(
        "llm_providers:\n  - model: anthropic/claude-sonnet-4-5\n    base_url: http://127.0.0.1:9\n"
    )
    exchange = Exchange(build_runtime(config, RouterStage(config.routing)))
    headers = {":path": "/v1/messages", ":method": "POST", "content-type": "application/json"}
    raw = orjson.dumps({"model": asked, "max_tokens": 5, "messages": []})

    async def send() -> ProcessingResponse:
        exchange.on_request_headers(headers, False)
        return ProcessingResponse.parse(await exchange.on_request_body(raw))

    reply = asyncio.run(send()).request_body.response
    assert (reply.body_mutation is not None) is rewritten_body
    set_names = [option.header.key for option in reply.header_mutation.set_headers]
    assert ("content-length" in set_names) is rewritten_body
    assert ("content-length" in reply.header_mutation.remove_headers) is rewritten_body
    if rewritten_body:
        assert orjson.loads(reply.body_mutation.body)["model"] == "claude-sonnet-4-5"


def test_a_body_on_another_path_is_passed_on_unread():
    """Envoy skips such bodies on the sidecar's word (mode_override); where the filter does
    not allow that, the body still goes on as it came."""
    config = parse(
        "llm_providers:\n  - model: anthropic/claude-sonnet-4-5\n    base_url: http://127.0.0.1:9\n"
    )
    exchange = Exchange(build_runtime(config, RouterStage(config.routing)))
    headers = {":path": "/v1/models", ":method": "POST"}

    async def send() -> tuple[ProcessingResponse, ProcessingResponse]:
        on_headers = ProcessingResponse.parse(exchange.on_request_headers(headers, False))
        return on_headers, ProcessingResponse.parse(await exchange.on_request_body(b"[1, 2"))

    on_headers, on_body = asyncio.run(send())
    assert on_headers.mode_override.request_body_mode == ProcessingModeBodySendMode.NONE
    assert on_body.request_body.response.body_mutation is None
    assert on_body.request_body.response.header_mutation is None


DOUBLE = b'{"model": "asked", "messages": [], "max_tokens": 5, "model": "claude-opus-4-1"}'


def test_a_second_model_key_cannot_choose_the_model():
    """JSON parsers keep the last of two equal keys: splicing the first would let the second
    choose the model the provider runs, on whatever key the gateway sends."""
    body, span = _parse_body(DOUBLE)
    assert span is None and body["model"] == "claude-opus-4-1"  # what a provider would read
    assert orjson.loads(rewrite(DOUBLE, "routed")) == {
        "model": "routed",
        "messages": [],
        "max_tokens": 5,
    }
    assert rewrite_model(DOUBLE, body, "claude-opus-4-1", span) is None


def test_the_key_after_model_is_parsed_as_json_too():
    for raw in (b'{"model": "m",}', b'{"model": "m"} trailing', b'{"model": "\\q"}'):
        with pytest.raises(GatewayError, match="not valid JSON"):
            _parse_body(raw)
    assert _parse_body(b'{"model": "m"}') == ({"model": "m"}, (10, 13))


def test_the_exchange_sends_one_model_key():
    config = parse(
        "llm_providers:\n  - model: anthropic/claude-sonnet-4-5\n    access_key: sk-gateway\n"
        "    base_url: http://127.0.0.1:9\n"
    )
    exchange = Exchange(build_runtime(config, RouterStage(config.routing)))
    headers = {":path": "/v1/messages", ":method": "POST", "content-type": "application/json"}
    exchange.on_request_headers(headers, False)
    reply = ProcessingResponse.parse(asyncio.run(exchange.on_request_body(DOUBLE)))
    sent = reply.request_body.response.body_mutation.body
    assert sent.count(b'"model"') == 1 and orjson.loads(sent)["model"] == "claude-sonnet-4-5"


def test_pass_through_paths_are_an_allow_list():
    config = parse(
        "llm_providers:\n  - model: anthropic/claude-sonnet-4-5\n    base_url: http://127.0.0.1:9\n"
        "pass_through_paths: [/api/event_logging/*]\n"
    )
    runtime = build_runtime(config, RouterStage(config.routing))

    def reply(path: str) -> ProcessingResponse | GatewayError:
        try:
            return ProcessingResponse.parse(
                Exchange(runtime).on_request_headers({":path": path, ":method": "GET"}, True)
            )
        except GatewayError as error:
            return error

    assert isinstance(reply("/api/event_logging/batch?x=1"), ProcessingResponse)
    for refused in (
        "/v1/models",
        "/api/event_logging/../../v1/messages/batches",
        "/api/x",
        "/api/event_logging",  # the entry's prefix is /api/event_logging/, slash included
        "/api/event_loggingX",
    ):
        error = reply(refused)
        assert isinstance(error, GatewayError) and error.status == 404, refused
