"""Faults: provider errors, resets, silence and DNS failures, a dead sidecar and a corrupt
router model. The client always gets an answer or an Anthropic-format error, in bounded time."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

import httpx
import pytest
import yaml

from extproc.commands.up import envoy_command
from extproc.config import load
from extproc.control.envoy_config import bootstrap, render
from extproc.providers.upstream import cluster_name
from tests.support.gateway import (
    STRICT_IDLE_S,
    gateway_config,
    gateway_ports,
    routed_gateway_config,
    start_gateway,
    stop_gateway,
)
from tests.support.processes import serve, sidecar_pid, wait_until
from tests.support.requests import (
    KEY,
    NATIVE,
    TRANSLATED,
    assert_anthropic_error,
    chat,
    get,
    send,
    stream_in_background,
)


@pytest.mark.parametrize(("model", "word"), [(NATIVE, "FAULT-500"), (TRANSLATED, "BROKEN")])
def test_upstream_500_reaches_the_client_as_an_anthropic_error(gateway, fakes, model, word):
    assert_anthropic_error(send(gateway, chat(model, word)), 500, "api_error")


@pytest.mark.parametrize(
    ("model", "word", "retry_after"), [(NATIVE, "FAULT-429", "7"), (TRANSLATED, "RATELIMIT", "1")]
)
def test_429_keeps_retry_after_for_the_client(gateway, fakes, model, word, retry_after):
    response = send(gateway, chat(model, word))
    assert_anthropic_error(response, 429, "rate_limit_error")
    assert response.headers["retry-after"] == retry_after


@pytest.mark.parametrize("model", [NATIVE, TRANSLATED])
def test_reset_mid_stream_ends_the_client_stream_not_hangs_it(gateway, fakes, model):
    """Envoy can't add an `event: error` to a stream it already forwards; it cuts the
    client's connection, which SDKs report as an error (and Claude Code retries). A hang
    would end in the client's read timeout instead, which is not the error expected here."""
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST",
            f"{gateway.url}/v1/messages",
            json=chat(model, "FAULT-RESET PACE-30", stream=True),
            headers=KEY,
            timeout=10,
        ) as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_raw():
            received += chunk
    assert b"message_start" in received and b"message_stop" not in received


def test_silent_upstream_gets_504_timeout_error(strict_gateway, fakes):
    """The gateway's idle timer answers, not the client's (which would raise instead)."""
    response = send(strict_gateway, chat(NATIVE, "FAULT-HANG"), timeout=STRICT_IDLE_S + 10)
    message = assert_anthropic_error(response, 504, "timeout_error")
    assert "listener.idle_timeout_s" in message


def test_unresolvable_provider_gets_503_api_error(strict_gateway, fakes):
    message = assert_anthropic_error(send(strict_gateway, chat("nowhere")), 503, "api_error")
    assert "its DNS lookup failed or has not answered yet" in message
    entry = strict_gateway.wait_log(lambda e: e["requested_model"] == "nowhere")
    assert entry["routed_model"] == "anthropic/claude-nowhere"


SILENT_HOST = "llm.silent-dns.test"


def silent_resolver(envoy_config: dict, port: int) -> None:
    """Send every DNS query of this Envoy to 127.0.0.1:`port`, and wait an hour for each:
    what a container with no DNS route, or a resolver that drops queries, looks like."""
    cares = "type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3"
    address = {"address": "127.0.0.1", "port_value": port, "protocol": "UDP"}
    envoy_config["typed_dns_resolver_config"] = {
        "name": "envoy.network.dns_resolver.cares",
        "typed_config": {
            "@type": f"{cares}.CaresDnsResolverConfig",
            "resolvers": [{"socket_address": address}],
            "query_timeout_seconds": 3600,
        },
    }


def test_a_provider_whose_dns_never_answers_does_not_keep_the_others_from_serving(
    tmp_path, fake_anthropic, fake_deepseek
):
    ports = gateway_ports()
    silent_provider = f"""\
  - model: mistral/silent
    base_url: https://{SILENT_HOST}/v1
    access_key: $TEST_OPENAI_KEY
model_aliases:
  silent: mistral/silent
"""
    text = gateway_config(fake_anthropic, fake_deepseek, **ports)
    config = tmp_path / "config.yaml"
    config.write_text(text.replace("model_aliases:\n", silent_provider))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as resolver:
        resolver.bind(("127.0.0.1", 0))
        envoy_config = bootstrap(load(config))
        silent_resolver(envoy_config, resolver.getsockname()[1])
        envoy_yaml = tmp_path / "envoy.yaml"
        envoy_yaml.write_text(yaml.safe_dump(envoy_config))
        sidecar = serve(config)
        envoy = subprocess.Popen(envoy_command(envoy_yaml), stderr=subprocess.DEVNULL)
        try:
            query, _ = resolver.recvfrom(512)  # Envoy asked, and gets no answer
            assert b"silent-dns" in query
            wait_until(f"http://127.0.0.1:{ports['admin']}/ready")
            wait_until(f"http://127.0.0.1:{ports['health']}/ready")
            url = f"http://127.0.0.1:{ports['listener']}/v1/messages"
            answer = httpx.post(url, json=chat("deep"), headers=KEY, timeout=10)
            assert answer.json()["content"][0]["text"] == fake_deepseek.answer
            response = httpx.post(url, json=chat("silent"), headers=KEY, timeout=10)
            assert assert_anthropic_error(response, 503, "api_error") == (
                "The gateway has no address for the provider: its DNS lookup failed or has "
                "not answered yet (llm_silent_dns_test_443, no_healthy_upstream)"
            )
        finally:
            for process in (sidecar, envoy):
                process.kill()
                process.wait()


# ------------------------------------------------------------------ a sidecar that dies


@pytest.mark.parametrize("allow", [False, True])
def test_sidecar_killed_then_restarted_under_a_running_envoy(
    tmp_path, fake_anthropic, fake_deepseek, fake_openai, fakes, allow
):
    ports = gateway_ports()
    text = gateway_config(fake_anthropic, fake_deepseek, fake_openai, **ports)
    text = text.replace("sidecar:\n", f"sidecar:\n  failure_mode_allow: {str(allow).lower()}\n")
    config = tmp_path / "config.yaml"
    config.write_text(text)
    envoy_yaml = tmp_path / "envoy.yaml"
    envoy_yaml.write_text(render(load(config)))
    health = f"http://127.0.0.1:{ports['health']}/ready"
    loaded = load(config)
    deepseek_cluster = cluster_name(loaded, loaded.provider_named("deepseek/deepseek-chat"))
    sidecar = serve(config)
    envoy = subprocess.Popen(envoy_command(envoy_yaml), stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{ports['listener']}/v1/messages"
    try:
        wait_until(health)
        wait_until(f"http://127.0.0.1:{ports['admin']}/ready")
        assert httpx.post(url, json=chat("deep"), headers=KEY).status_code == 200

        sidecar.kill()
        sidecar.wait()
        for model in ("deep", TRANSLATED, "claude-sonnet-4-5"):
            # A client's own cluster header, naming a real cluster, can't steer it to a
            # provider either: with failure_mode_allow Envoy would route on it unless stripped.
            headers = {**KEY, "x-extproc-cluster": deepseek_cluster}
            response = httpx.post(url, json=chat(model), headers=headers, timeout=10)
            message = assert_anthropic_error(response, 503, "api_error")
            assert "routing sidecar is unavailable" in message
        assert not any(fake.received[1:] for fake in fakes)

        sidecar = serve(config)
        wait_until(health)
        response = httpx.post(url, json=chat("deep"), headers=KEY, timeout=10)
        assert response.status_code == 200
        assert response.json()["content"][0]["text"] == fake_deepseek.answer
    finally:
        for process in (sidecar, envoy):
            process.kill()
            process.wait()


def test_corrupt_router_model_falls_back_and_says_why(
    tmp_path, fake_anthropic, fake_deepseek, tiny_router_dir, fakes
):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_router_dir, model_dir)
    weights = model_dir / "model.bin"
    weights.write_bytes(weights.read_bytes()[:1000])
    ports = gateway_ports()
    config = routed_gateway_config(fake_anthropic, fake_deepseek, model_dir, **ports)
    gateway = start_gateway(config, tmp_path, ports["listener"])
    try:
        response = send(gateway, chat("claude-opus-4-8", "write a function that sorts a list"))
        assert response.status_code == 200
        entry = gateway.wait_log(lambda e: e["requested_model"] == "claude-opus-4-8")
        assert entry["source"] == "fallback"
        assert entry["routed_model"] == "anthropic/claude-sonnet-4-5"
        assert "router unavailable" in entry["note"]
        metrics = get(f"http://127.0.0.1:{ports['health']}/metrics")[1]
        assert 'extproc_router_fallbacks_total{reason="unavailable"} 1.0' in metrics
    finally:
        stop_gateway(gateway)


# ------------------------------------------------- a sidecar that dies under `extproc up`


def test_sidecar_killed_under_up_native_streams_finish_and_it_comes_back(
    tmp_path, fake_anthropic, fake_deepseek, fake_openai, fakes
):
    """SIGKILL (what the out-of-memory killer sends) mid-stream: an Anthropic-format stream
    needs nothing more from the sidecar once routed and finishes; a translated one is cut;
    `extproc up` starts the sidecar again and the gateway serves without a human."""
    ports = gateway_ports()
    config = gateway_config(fake_anthropic, fake_deepseek, fake_openai, **ports)
    gateway = start_gateway(config.replace("  log_tokens: true\n", ""), tmp_path, ports["listener"])
    try:
        native = stream_in_background(gateway, NATIVE, "PACE-250 MARK-native")
        translated = stream_in_background(gateway, TRANSLATED, "PACE-250 MARK-translated")
        assert native[1]["opened"].wait(10) and translated[1]["opened"].wait(10)
        os.kill(sidecar_pid(gateway), signal.SIGKILL)
        killed = time.monotonic()
        for thread, _ in (native, translated):
            thread.join(30)
        assert "error" not in native[1]
        assert b"MARK-native" in native[1]["bytes"]
        assert native[1]["bytes"].rstrip().endswith(b'data: {"type": "message_stop"}')
        assert b"message_stop" not in translated[1]["bytes"]

        statuses = set()
        while (response := send(gateway, chat("deep"), timeout=10)).status_code != 200:
            message = assert_anthropic_error(response, 503, "api_error")
            assert "routing sidecar is unavailable" in message
            statuses.add(response.status_code)
            assert time.monotonic() - killed < 15, "the sidecar did not come back"
            time.sleep(0.2)
        assert response.json()["content"][0]["text"] == fake_deepseek.answer
        assert any(
            "sidecar was stopped by SIGKILL" in line and "restarting it in" in line
            for line in gateway.output
        ), gateway.output
    finally:
        assert stop_gateway(gateway) == 0
