"""Security: credentials go only where config says, keys never show up anywhere a client or
an operator can read, neither the body nor the headers can steer a request upstream, and the
sidecar is shown only what it reads."""

from __future__ import annotations

import dataclasses
import json

import httpx
import pytest
import yaml

from extproc.config import load, parse
from extproc.control.envoy_config import render
from extproc.providers.upstream import CLUSTER_HEADER, cluster_name
from extproc.proxy import replies
from extproc.proxy.exchange import GATEWAY_KEY_HEADERS, READ_HEADERS
from extproc.proxy.wire import Phase
from tests.support.envoy import envoy_in_front, post_once_ready, recording_processor
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway import PROVIDER_KEYS, free_port
from tests.support.requests import chat, get

CLIENT_SECRETS = {"x-api-key": "sk-ant-client-secret-1", "authorization": "Bearer client-secret-2"}


@pytest.mark.parametrize(
    ("model", "fake_index", "header", "key"),
    [
        ("claude-sonnet-4-5", 0, "x-api-key", "TEST_ANTHROPIC_KEY"),
        ("deep", 1, "x-api-key", "TEST_DEEPSEEK_KEY"),
        ("openai/gpt-4.1", 2, "authorization", "TEST_OPENAI_KEY"),
    ],
)
def test_client_credentials_reach_no_provider_that_has_its_own_key(
    gateway, fakes, model, fake_index, header, key
):
    response = httpx.post(f"{gateway.url}/v1/messages", json=chat(model), headers=CLIENT_SECRETS)
    assert response.status_code == 200
    [seen] = fakes[fake_index].received
    assert PROVIDER_KEYS[key] in seen.headers[header]
    sent = json.dumps(seen.headers) + seen.body.decode()
    assert not any(secret.split()[-1] in sent for secret in CLIENT_SECRETS.values())


def test_provider_keys_appear_in_no_log_error_body_or_metric(gateway, fakes):
    bodies = []
    for model, text in [
        ("claude-sonnet-4-5", "hi"),
        ("deep", "hi"),
        ("openai/gpt-4.1", "BROKEN"),
        ("openai/gpt-4.1", "RATELIMIT"),
        ("claude-sonnet-4-5", "FAULT-500"),
        ("deepseek/deepseek-reasoner", "unset key"),
        ("bad\nmodel", "hi"),
    ]:
        response = httpx.post(f"{gateway.url}/v1/messages", json=chat(model, text))
        bodies.append(json.dumps(dict(response.headers)) + response.text)
    # A pass-through path sends the gateway's key; a request without credentials to the
    # entry that passes the client's own is refused upstream: no answer may echo a key.
    bodies.append(httpx.get(f"{gateway.url}/v1/models").text)
    bodies.append(httpx.post(f"{gateway.url}/v1/messages", json=chat("claude-opus-4-8")).text)
    gateway.wait_log(lambda e: "TEST_UNSET_KEY" in (e.get("note") or ""))
    health = load(gateway.config_path).sidecar.health_port
    places = {
        "error bodies": "\n".join(bodies),
        "access log (with the decision metadata)": gateway.access_log.read_text(),
        "sidecar and envoy logs": "\n".join(gateway.output),
        "metrics": get(f"http://127.0.0.1:{health}/metrics")[1],
        "config digest": get(f"http://127.0.0.1:{health}/config")[1],
    }
    for where, text in places.items():
        for key in PROVIDER_KEYS.values():
            assert key not in text, f"{key} leaked into {where}"


def test_host_header_cannot_steer_to_another_upstream(gateway, fakes, tmp_path):
    """Neither Host nor a client's own x-extproc-cluster picks the upstream. Through the
    gateway the sidecar names the cluster. Behind an ext_proc server that names none (it lets
    every request go on unchanged), the request has no route at all: Envoy removed the
    client's cluster header before any filter ran."""
    anthropic_fake, deepseek, _ = fakes
    deepseek_host = deepseek.url.removeprefix("http://")
    for host in (deepseek_host, "api.openai.com", "evil.example"):
        response = httpx.post(
            f"{gateway.url}/v1/messages", json=chat("claude-sonnet-4-5"), headers={"host": host}
        )
        assert response.status_code == 200
    assert len(anthropic_fake.received) == 3 and not deepseek.received
    assert {r.headers["host"] for r in anthropic_fake.received} == {"127.0.0.1"}

    seen: list[Phase] = []
    server, processor_port = recording_processor(seen)
    ports = {name: free_port() for name in ("listener", "admin")}
    config = parse(
        f"""\
listener: {{port: {ports["listener"]}, admin_port: {ports["admin"]}}}
sidecar: {{port: {processor_port}}}
llm_providers:
  - model: anthropic/claude-sonnet-4-5
    base_url: {anthropic_fake.url}
    access_key: k
  - model: deepseek/deepseek-chat
    base_url: {deepseek.url}/anthropic
    access_key: k
"""
    )
    steer = {"host": deepseek_host, CLUSTER_HEADER: cluster_name(config, config.providers[1])}
    url = f"http://127.0.0.1:{ports['listener']}/v1/messages"
    with envoy_in_front(config, tmp_path):
        response = post_once_ready(url, json=chat("deepseek/deepseek-chat"), headers=steer)
    server.stop(None)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["type"] == "api_error"
    assert [p.name for p in seen][:1] == ["request_headers"]
    assert len(anthropic_fake.received) == 3 and not deepseek.received


def test_everything_binds_loopback_by_default():
    bootstrap = yaml.safe_load(render(parse("llm_providers:\n  - model: openai/gpt-4.1\n")))
    [listener] = bootstrap["static_resources"]["listeners"]
    assert listener["address"]["socket_address"]["address"] == "127.0.0.1"
    assert bootstrap["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    [sidecar] = [c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "extproc"]
    endpoint = sidecar["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["address"] == "127.0.0.1"
    assert parse("llm_providers:\n  - model: openai/gpt-4.1\n").sidecar.address == "127.0.0.1"


@pytest.mark.parametrize("with_gateway_keys", [False, True])
def test_the_sidecar_sees_only_the_headers_it_reads(tmp_path, with_gateway_keys):
    """Envoy forwards :path, :method and the content headers; client credentials only when
    the sidecar must check gateway keys."""
    seen: list[Phase] = []
    server, processor_port = recording_processor(seen)
    ports = {name: free_port() for name in ("listener", "admin")}
    keys = "gateway_keys: [gateway-key-0123456789]\n" if with_gateway_keys else ""
    config = parse(
        f"""\
{keys}listener: {{port: {ports["listener"]}, admin_port: {ports["admin"]}}}
sidecar: {{port: {processor_port}}}
llm_providers:
  - model: anthropic/claude-sonnet-4-5
    base_url: http://127.0.0.1:9
"""
    )
    url = f"http://127.0.0.1:{ports['listener']}/v1/messages"
    with envoy_in_front(config, tmp_path):
        post_once_ready(url, json=chat("claude-sonnet-4-5"), headers=CLIENT_SECRETS)
    server.stop(None)
    request_headers = next(p.headers for p in seen if p.name == "request_headers")
    assert request_headers[":path"] == "/v1/messages"
    assert request_headers[":method"] == "POST"
    assert request_headers["content-type"] == "application/json"
    allowed = set(READ_HEADERS) | (set(GATEWAY_KEY_HEADERS) if with_gateway_keys else set())
    assert set(request_headers) <= allowed
    assert ("x-api-key" in request_headers) is with_gateway_keys
    assert any(p.name == "request_body" and p.body for p in seen)


def test_envoy_skips_the_body_of_a_request_routed_by_its_headers(tmp_path):
    """The sidecar's reply for paths other than Messages tells Envoy not to send their
    bodies (nor the response) to the sidecar: they go upstream without a round trip."""
    upstream = FakeAnthropic().start()
    ports = {name: free_port() for name in ("listener", "admin")}
    config = parse(
        f"""\
listener: {{port: {ports["listener"]}, admin_port: {ports["admin"]}}}
llm_providers:
  - model: anthropic/claude-sonnet-4-5
    base_url: {upstream.url}
"""
    )
    cluster = replies.header_mutation({CLUSTER_HEADER: cluster_name(config, config.providers[0])})
    seen: list[Phase] = []
    server, processor_port = recording_processor(seen, replies.route_request_headers(cluster, {}))
    config = dataclasses.replace(
        config, sidecar=dataclasses.replace(config.sidecar, port=processor_port)
    )
    body = b'{"events": [{"event_type": "tengu_init"}]}'
    url = f"http://127.0.0.1:{ports['listener']}/api/event_logging/batch"
    with envoy_in_front(config, tmp_path):
        response = post_once_ready(url, content=body, headers={"content-type": "application/json"})
    server.stop(None)
    upstream.stop()
    assert response.status_code == 200
    assert [received.body for received in upstream.received] == [body]
    assert [phase.name for phase in seen] == ["request_headers"]
