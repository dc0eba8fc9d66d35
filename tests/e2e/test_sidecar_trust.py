"""Who may use the sidecar's gRPC port, whose replies carry provider keys: only a caller that
presents the sidecar's secret, as the rendered Envoy config does, and only in the order Envoy
speaks. Raw gRPC calls against the real sidecar (issue 23: a body sent before its headers got
the provider's key back from anyone who could reach the port)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import orjson
import pytest
import yaml
from envoy_data_plane.envoy.service.ext_proc.v3 import (
    HttpBody,
    ProcessingRequest,
    ProcessingResponse,
)

from extproc.config import SIDECAR_SECRET_VAR
from tests.support.ext_proc import METHOD, headers_message
from tests.support.gateway import PROVIDER_KEYS, Gateway, free_port
from tests.support.processes import serve, wait_until

SECRET = "test-sidecar-secret-0123456789"
GATEWAY_KEY = "gk-team-0123456789"
PROVIDER_KEY = PROVIDER_KEYS["TEST_DEEPSEEK_KEY"]
BODY = orjson.dumps({"model": "deepseek-chat", "max_tokens": 5, "messages": []})


@pytest.fixture
def sidecar_port(tmp_path: Path) -> Iterator[int]:
    """`extproc serve` with a secret and gateway_keys; its gRPC port."""
    port, health = free_port(), free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"gateway_keys: [{GATEWAY_KEY}]\n"
        "llm_providers:\n  - model: deepseek/deepseek-chat\n    access_key: $TEST_DEEPSEEK_KEY\n"
        f"sidecar: {{port: {port}, health_port: {health}}}\n"
    )
    process = serve(config, env={SIDECAR_SECRET_VAR: SECRET})
    try:
        wait_until(f"http://127.0.0.1:{health}/healthz")
        yield port
    finally:
        process.kill()
        process.wait()


def call(
    port: int, messages: list[ProcessingRequest], metadata: tuple[tuple[str, str], ...] = ()
) -> list[ProcessingResponse]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        process = channel.stream_stream(
            METHOD, request_serializer=bytes, response_deserializer=ProcessingResponse.parse
        )
        return list(process(iter(messages), metadata=metadata, timeout=10))


def a_request() -> list[ProcessingRequest]:
    """A Messages request as Envoy sends it, with the gateway key: headers, then the body."""
    return [
        headers_message("/v1/messages", {"x-api-key": GATEWAY_KEY}),
        ProcessingRequest(request_body=HttpBody(body=BODY, end_of_stream=True)),
    ]


@pytest.mark.parametrize("metadata", [(), (("x-extproc-secret", "guessed"),)])
def test_a_caller_without_the_secret_is_refused(sidecar_port, metadata):
    with pytest.raises(grpc.RpcError) as refused:
        call(sidecar_port, a_request(), metadata)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.details() == (
        "the ext_proc stream lacks the sidecar's secret (x-extproc-secret)"
    )


def test_a_body_before_its_headers_is_refused_even_with_the_secret(sidecar_port):
    body_first = [ProcessingRequest(request_body=HttpBody(body=BODY, end_of_stream=True))]
    (reply,) = call(sidecar_port, body_first, (("x-extproc-secret", SECRET),))
    assert reply.immediate_response.status.code == 500
    error = orjson.loads(reply.immediate_response.body)["error"]
    assert error == {
        "type": "api_error",
        "message": "ext_proc request_body came before the request's headers",
    }
    assert PROVIDER_KEY.encode() not in bytes(reply)


def test_with_the_secret_and_in_envoys_order_the_request_is_routed(sidecar_port):
    on_headers, on_body = call(sidecar_port, a_request(), (("x-extproc-secret", SECRET),))
    assert on_headers.request_headers is not None
    mutation = on_body.request_body.response.header_mutation
    set_headers = {o.header.key: o.header.raw_value.decode() for o in mutation.set_headers}
    assert set_headers["x-api-key"] == PROVIDER_KEY


def test_under_up_the_grpc_port_wants_the_secret_of_this_run(gateway: Gateway, fakes):
    """`extproc up` makes a secret for each run: Envoy is served, another local process is
    not."""
    sidecar = yaml.safe_load(gateway.config_path.read_text())["sidecar"]
    with pytest.raises(grpc.RpcError) as refused:
        call(sidecar["port"], a_request())
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    body = {"model": "deepseek/deepseek-chat", "max_tokens": 5, "messages": []}
    body["messages"] = [{"role": "user", "content": "hi"}]
    response = httpx.post(f"{gateway.url}/v1/messages", json=body, timeout=30)
    assert response.status_code == 200, response.text
