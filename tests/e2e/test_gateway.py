"""End to end: anthropic SDK and captured Claude Code requests → real Envoy → sidecar → fakes."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from extproc.config import parse
from extproc.providers.upstream import cluster_name
from tests.support.captured import captured, wire_body
from tests.support.envoy import envoy_in_front, post_once_ready
from tests.support.gateway import PROVIDER_KEYS, gateway_config, gateway_ports
from tests.support.requests import assert_anthropic_error

CLIENT_KEY = "sk-ant-client-own-key"


def client(gateway, key: str = CLIENT_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, timeout=30)


def test_sdk_message_to_deepseek_by_explicit_name(gateway, fakes):
    _, deepseek, _ = fakes
    reply = client(gateway).messages.create(
        model="deepseek/deepseek-chat",
        max_tokens=100,
        messages=[{"role": "user", "content": "héllo, 世界"}],
    )
    assert reply.content[0].text == "deepseek says hi"
    [seen] = deepseek.received
    assert seen.path == "/anthropic/v1/messages"
    assert seen.json()["model"] == "deepseek-chat"
    assert seen.json()["messages"] == [{"role": "user", "content": "héllo, 世界"}]
    assert seen.headers["x-api-key"] == PROVIDER_KEYS["TEST_DEEPSEEK_KEY"]
    assert "authorization" not in seen.headers
    assert int(seen.headers["content-length"]) == len(seen.body)
    entry = gateway.wait_log(lambda e: e["requested_model"] == "deepseek/deepseek-chat")
    assert entry["routed_model"] == "deepseek/deepseek-chat"
    assert entry["source"] == "explicit"
    assert entry["status"] == 200
    assert (entry["input_tokens"], entry["output_tokens"]) == (12, 6), "read with log_tokens"


def test_sdk_stream_reaches_client_byte_for_byte(gateway, fakes):
    anthropic_fake, _, _ = fakes
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "stream please"}],
    }
    headers = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
    with httpx.stream("POST", f"{gateway.url}/v1/messages", json=body, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        received = b"".join(response.iter_raw())
    assert received == b"".join(anthropic_fake.sent), "log_tokens reads the stream, unchanged"
    [seen] = anthropic_fake.received
    assert seen.headers["x-api-key"] == PROVIDER_KEYS["TEST_ANTHROPIC_KEY"]
    entry = gateway.wait_log(lambda e: e["request_id"] == seen.headers["x-request-id"])
    assert (entry["input_tokens"], entry["output_tokens"]) == (12, 6)

    with client(gateway).messages.stream(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "again"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == anthropic_fake.answer
    assert final.model == "claude-sonnet-4-5"


def test_alias_glob_routes_background_haiku_calls(gateway, fakes):
    anthropic_fake, _, _ = fakes
    client(gateway).messages.create(
        model="claude-3-5-haiku-20241022",
        max_tokens=10,
        messages=[{"role": "user", "content": "t"}],
    )
    [seen] = anthropic_fake.received
    assert seen.json()["model"] == "claude-haiku-4-5"
    entry = gateway.wait_log(lambda e: e["requested_model"] == "claude-3-5-haiku-20241022")
    assert (entry["source"], entry["routed_model"]) == ("alias", "anthropic/claude-haiku-4-5")


def send_captured(gateway, name: str, model: str | None = None) -> tuple[httpx.Response, bytes]:
    """Replay a captured Claude Code request with all its headers, as it was sent."""
    request = captured(name)
    body = request["body"] if model is None else {**request["body"], "model": model}
    raw = wire_body(body)
    skip = {"host", "content-length", "connection"}
    headers = {k: v for k, v in request["headers"].items() if k.lower() not in skip}
    response = httpx.post(gateway.url + request["path"], content=raw, headers=headers, timeout=30)
    return response, raw


@pytest.mark.parametrize("name", ["first-turn", "tool-loop"])
def test_captured_claude_code_request_rewritten_only_in_model(gateway, fakes, name):
    _, deepseek, _ = fakes
    response, raw = send_captured(gateway, name, model="deep")
    assert response.status_code == 200
    assert response.text.startswith("event: message_start")
    [seen] = deepseek.received
    assert seen.path == "/anthropic/v1/messages?beta=true"
    assert seen.body == raw.replace(b'"model":"deep"', b'"model":"deepseek-chat"', 1)
    assert int(seen.headers["content-length"]) == len(seen.body)
    assert seen.headers["x-api-key"] == PROVIDER_KEYS["TEST_DEEPSEEK_KEY"]
    assert "sk-ant-example-client-key" not in json.dumps(seen.headers)
    assert seen.headers["anthropic-beta"] == captured(name)["headers"]["anthropic-beta"]


def test_captured_request_for_subscription_passes_client_credentials(gateway, fakes):
    anthropic_fake, _, _ = fakes
    response, raw = send_captured(gateway, "interactive-title")
    assert response.status_code == 200
    [seen] = anthropic_fake.received
    assert seen.body == raw
    assert seen.headers["authorization"] == "Bearer example-gateway-token"
    assert "x-api-key" not in seen.headers
    entry = gateway.wait_log(
        lambda e: (
            e.get("session") == captured("interactive-title")["headers"]["X-Claude-Code-Session-Id"]
        )
    )
    assert (entry["requested_model"], entry["routed_model"]) == (
        "claude-opus-4-8",
        "anthropic/claude-opus-4-8",
    )


def test_unknown_model_goes_to_default(gateway, fakes):
    anthropic_fake, _, _ = fakes
    client(gateway).messages.create(
        model="gpt-nonexistent", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    )
    [seen] = anthropic_fake.received
    assert seen.json()["model"] == "claude-sonnet-4-5"


def test_count_tokens_is_routed_like_messages(gateway, fakes):
    _, deepseek, _ = fakes
    count = client(gateway).messages.count_tokens(
        model="deep", messages=[{"role": "user", "content": "count me"}]
    )
    assert count.input_tokens == 42
    [seen] = deepseek.received
    assert seen.path == "/anthropic/v1/messages/count_tokens"


@pytest.mark.parametrize(
    ("body", "status", "kind", "words"),
    [
        (b'{"model": "x", ', 400, "invalid_request_error", "not valid JSON"),
        (b"[1, 2]", 400, "invalid_request_error", "JSON object"),
        (b'{"messages": []}', 400, "invalid_request_error", "model"),
        (b'{"model": "deepseek/deepseek-reasoner"}', 401, "authentication_error", "TEST_UNSET_KEY"),
    ],
)
def test_bad_requests_get_anthropic_errors(gateway, fakes, body, status, kind, words):
    response = httpx.post(
        f"{gateway.url}/v1/messages",
        content=body,
        headers={"content-type": "application/json", "x-api-key": CLIENT_KEY},
    )
    assert response.status_code == status
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == kind
    assert words in error["error"]["message"]
    assert all(not f.received for f in fakes)


def test_sdk_raises_typed_error_for_missing_provider_key(gateway, fakes):
    with pytest.raises(anthropic.AuthenticationError, match="TEST_UNSET_KEY"):
        client(gateway).messages.create(
            model="deepseek/deepseek-reasoner",
            max_tokens=5,
            messages=[{"role": "user", "content": "x"}],
        )


def test_other_paths_pass_through_to_anthropic(gateway, fakes):
    anthropic_fake, _, _ = fakes
    response = httpx.get(f"{gateway.url}/v1/models", headers={"x-api-key": CLIENT_KEY})
    assert response.status_code == 200
    [seen] = anthropic_fake.received
    assert seen.path == "/v1/models"


def test_client_cannot_pick_the_cluster_itself(fake_anthropic, fake_deepseek, fakes, tmp_path):
    """Only the sidecar names the cluster. With `failure_mode_allow: true` and the sidecar
    out of reach, Envoy carries the request on as the client sent it: a client's own
    x-extproc-cluster, naming a real cluster, would then pick the provider unless Envoy
    removed it first."""
    ports = gateway_ports()
    text = gateway_config(fake_anthropic, fake_deepseek, **ports)  # nothing serves the sidecar port
    config = parse(text.replace("sidecar:\n", "sidecar:\n  failure_mode_allow: true\n"))
    deepseek = cluster_name(config, config.provider_named("deepseek/deepseek-chat"))
    url = f"http://127.0.0.1:{ports['listener']}/v1/messages"
    with envoy_in_front(config, tmp_path):
        response = post_once_ready(
            url,
            json={"model": "deep", "max_tokens": 5, "messages": []},
            headers={"x-extproc-cluster": deepseek, "x-api-key": CLIENT_KEY},
        )
    message = assert_anthropic_error(response, 503, "api_error")
    assert "routing sidecar is unavailable" in message
    assert not any(fake.received for fake in fakes)


def test_a_post_to_another_path_passes_through_unread(gateway, fakes):
    """A body on a pass-through path is not a Messages body: it goes on as it came."""
    anthropic_fake, _, _ = fakes
    body = b'{"events": [{"event_type": "tengu_init"}]}'
    response = httpx.post(
        f"{gateway.url}/v1/models/x",
        content=body,
        headers={"x-api-key": CLIENT_KEY, "content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    [seen] = anthropic_fake.received
    assert (seen.path, seen.body) == ("/v1/models/x", body)
