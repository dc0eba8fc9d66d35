"""Editing config.yaml while `extproc up` runs: applied to the next request; no stream cut,
whatever the order of edits, sidecar crashes and refusals; Envoy and the sidecar in step."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import time

import anthropic
import httpx
import pytest

from extproc.config import load
from extproc.decisions.router.engine import ArchRouter
from extproc.decisions.routing import routes_of
from tests.support.conversations import conversations
from tests.support.gateway import gateway_config, routed_gateway_config, running_gateway
from tests.support.processes import children, run_folder, sidecar_pid, wait_until
from tests.support.requests import KEY, chat, stream_in_background


@pytest.fixture
def gateway(fake_anthropic, fake_deepseek, tiny_router_dir, tmp_path):
    with running_gateway(
        lambda ports: routed_gateway_config(
            fake_anthropic, fake_deepseek, tiny_router_dir, **ports
        ),
        tmp_path,
    ) as gw:
        yield gw


@pytest.fixture
def streaming_gateway(fake_anthropic, fake_deepseek, fake_openai, tmp_path):
    """All three fakes; with log_tokens, every stream holds a sidecar stream to its end."""
    with running_gateway(
        lambda ports: gateway_config(fake_anthropic, fake_deepseek, fake_openai, **ports),
        tmp_path,
    ) as gw:
        yield gw


@pytest.fixture
def failover_gateway(fake_anthropic, fake_deepseek, fake_openai, tmp_path):
    """With failover: deepseek-chat's candidates are itself, then the default (Claude);
    providers never rest after failing."""

    def config_for(ports: dict[str, int]) -> str:
        return f"""\
listener: {{port: {ports["listener"]}, admin_port: {ports["admin"]}, cooldown_max_s: 0}}
sidecar: {{port: {ports["sidecar"]}, health_port: {ports["health"]}}}
llm_providers:
  - model: anthropic/claude-sonnet-4-5
    base_url: {fake_anthropic.url}
    access_key: $TEST_ANTHROPIC_KEY
    default: true
  - model: deepseek/deepseek-chat
    base_url: {fake_deepseek.url}/anthropic
    access_key: $TEST_DEEPSEEK_KEY
  - model: openai/gpt-4.1
    base_url: {fake_openai.url}/v1
    provider_interface: openai-chat
    access_key: $TEST_OPENAI_KEY
"""

    with running_gateway(config_for, tmp_path) as gw:
        yield gw


def edit(gateway, replacements: dict[str, str], expect: str) -> list[str]:
    """Change config.yaml in one write; wait until `extproc up` says `expect`; the lines it
    printed meanwhile."""
    before = len(gateway.output)
    text = gateway.config_path.read_text()
    for old, new in replacements.items():
        assert old in text
        text = text.replace(old, new)
    gateway.config_path.write_text(text)
    deadline = time.monotonic() + 30
    while not any(expect in line for line in gateway.output[before:]):
        assert time.monotonic() < deadline, "\n".join(gateway.output[before:])
        time.sleep(0.1)
    return gateway.output[before:]


def port_of(fake) -> str:
    return fake.url.rpartition(":")[2]


def provider(model: str, base_url: str, key: str, interface: str = "") -> dict[str, str]:
    """An edit that adds a provider entry (before model_aliases, which ends the list)."""
    entry = f"  - model: {model}\n    base_url: {base_url}\n    access_key: ${key}\n"
    if interface:
        entry += f"    provider_interface: {interface}\n"
    return {"model_aliases:": f"{entry}model_aliases:"}


def upstream_of(gateway, fakes, model: str) -> str:
    """Ask `model` once: the Envoy cluster the access log says the request went to."""
    marker = f"MARK-{time.monotonic_ns()}"
    body = {"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": marker}]}
    response = httpx.post(f"{gateway.url}/v1/messages", json=body, headers=KEY, timeout=20)
    assert response.status_code == 200, response.text
    [request] = [r for fake in fakes for r in fake.received if marker.encode() in r.body]
    request_id = request.headers["x-request-id"]
    return gateway.wait_log(lambda e: e["request_id"] == request_id)["upstream"]


def streams(gateway, *models_and_paces: tuple[str, str]) -> list[tuple[object, dict, str]]:
    """Streams opened at once, each asking its fake for its own marker: (thread, seen, marker)."""
    opened = []
    for i, (model, pace) in enumerate(models_and_paces):
        marker = f"MARK-s{i}"
        thread, seen = stream_in_background(gateway, model, f"{pace} {marker}")
        opened.append((thread, seen, marker))
    for _, seen, _ in opened:
        assert seen["opened"].wait(10), "a stream did not open"
    return opened


def finish(opened: list[tuple[object, dict, str]]) -> None:
    """Every stream was still open after the edits, and ends whole: all its text, its own
    marker last, then `end_turn` and `message_stop`."""
    assert all(thread.is_alive() for thread, _, _ in opened), "a stream ended before the edits"
    for thread, seen, marker in opened:
        thread.join(30)
        assert "error" not in seen, f"the stream was cut: {seen['error']!r}"
        events = [
            json.loads(line.removeprefix("data: "))
            for line in seen["bytes"].decode().splitlines()
            if line.startswith("data: ")
        ]
        deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
        assert "".join(d.get("text", "") for d in deltas).endswith(marker)
        assert [e["type"] for e in events[-2:]] == ["message_delta", "message_stop"]
        assert events[-2]["delta"]["stop_reason"] == "end_turn"


def test_edits_apply_to_the_next_request(gateway, fakes, tiny_router_dir):
    anthropic_fake, deepseek_fake, _ = fakes
    routes = routes_of(load(gateway.config_path))
    windows = conversations(24, seed=5)
    model = ArchRouter(tiny_router_dir)
    window = next(
        w
        for w, r in zip(windows, model.classify(routes, windows), strict=True)
        if r == "code_generation"
    )
    model.close()
    client = anthropic.Anthropic(base_url=gateway.url, api_key="sk-ant-user", max_retries=0)

    def ask() -> str:
        client.messages.create(model="claude-opus-4-8", max_tokens=5, messages=window)
        seen = (anthropic_fake.received + deepseek_fake.received)[-1]
        return gateway.wait_log(lambda e: e["request_id"] == seen.headers["x-request-id"])[
            "routed_model"
        ]

    assert ask() == "deepseek/deepseek-chat"

    # A model assignment change on the same origin: no new cluster, same routes.
    edit(gateway, {"deepseek/deepseek-chat": "deepseek/deepseek-reasoner"}, "models applied")
    assert ask() == "deepseek/deepseek-reasoner"

    # An invalid edit is reported and changes nothing.
    edit(gateway, {"default: true": "default: maybe"}, "expected true or false")
    assert any("the last good config stays in force" in line for line in gateway.output)
    assert ask() == "deepseek/deepseek-reasoner"


def envoy_clusters(gateway) -> set[str]:
    admin = load(gateway.config_path).listener.admin_port
    text = httpx.get(f"http://127.0.0.1:{admin}/clusters").text
    return {line.split("::", 1)[0] for line in text.splitlines()}


def test_streams_outlast_edits_to_every_kind_of_cluster(streaming_gateway, fakes):
    """Four edits one after the other while native and translated streams of ~15 s run: a
    new origin; every cluster's limits, the sidecar's included; the translated streams' own
    origin moved away; the body limit (the listener). Every stream ends whole, and each edit
    reaches the next request. Then the cluster no longer needed goes, one Envoy and one
    sidecar run, and the run folder holds only their files (it used to keep one Envoy and
    one file per edit, and the second edit cut every stream)."""
    gateway, (anthropic_fake, _, openai_fake) = streaming_gateway, fakes
    openai = port_of(openai_fake)
    opened = streams(
        gateway, *[("claude-sonnet-4-5", "PACE-1300"), ("openai/gpt-4.1", "PACE-1000")] * 2
    )
    mini = provider(
        "openai/gpt-4.1-mini", f"http://localhost:{openai}/v1", "TEST_OPENAI_KEY", "openai-chat"
    )
    edit(gateway, mini, "models applied")
    assert upstream_of(gateway, fakes, "openai/gpt-4.1-mini") == f"localhost_{openai}"
    limits = "  log_tokens: true\n"
    edit(gateway, {limits: f"{limits}  max_concurrent_requests: 999\n"}, "models applied")
    native_cluster = f"127_0_0_1_{port_of(anthropic_fake)}"
    assert upstream_of(gateway, fakes, "claude-sonnet-4-5") == native_cluster
    edit(gateway, {f"{openai_fake.url}/v1": f"http://localhost:{openai}/v1"}, "models applied")
    assert upstream_of(gateway, fakes, "openai/gpt-4.1") == f"localhost_{openai}"
    edit(gateway, {limits: f"{limits}  max_body_bytes: 1048576\n"}, "models applied")
    assert upstream_of(gateway, fakes, "openai/gpt-4.1") == f"localhost_{openai}"
    finish(opened)

    deadline = time.monotonic() + 20
    while f"127_0_0_1_{openai}" in envoy_clusters(gateway):
        assert time.monotonic() < deadline, "the cluster no longer needed was never removed"
        time.sleep(0.2)
    folder = run_folder(gateway)
    files = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
    assert files == [
        "config.yaml",
        "envoy/bootstrap.yaml",
        "envoy/clusters.yaml",
        "envoy/listeners.yaml",
        "envoy/routes.yaml",
    ]
    processes = children(gateway.process.pid)
    assert len(processes) == 2 and not any(p.startswith("Z") for p in processes), processes


def test_an_edit_while_the_sidecar_is_down_reaches_it_and_envoy(streaming_gateway, fakes):
    """The sidecar is SIGKILLed and a provider on a new origin saved at once: the sidecar
    comes back on its first backoff, and it and Envoy both have the new provider (the reload
    used to wait 10 s for it, then skip Envoy: `cluster_not_found`). Native streams, which
    the sidecar is done with, outlast the kill and two edits."""
    gateway, deepseek = streaming_gateway, port_of(fakes[1])
    # Without log_tokens, an Anthropic-format stream needs the sidecar only to be routed.
    edit(gateway, {"log_tokens: true": "log_tokens: false"}, "models applied")
    opened = streams(
        gateway, ("claude-sonnet-4-5", "PACE-1300"), ("claude-sonnet-4-5", "PACE-1300")
    )
    os.kill(sidecar_pid(gateway), signal.SIGKILL)
    v4 = provider(
        "deepseek/deepseek-v4", f"http://localhost:{deepseek}/anthropic", "TEST_DEEPSEEK_KEY"
    )
    lines = edit(gateway, v4, "models applied")
    assert any("sidecar was stopped by SIGKILL" in line for line in lines), lines
    assert any("restarting it in 0.5s (restart 1)" in line for line in lines), lines
    assert upstream_of(gateway, fakes, "deepseek/deepseek-v4") == f"localhost_{deepseek}"
    edit(gateway, {"model: deepseek/deepseek-v4": "model: deepseek/deepseek-v5"}, "models applied")
    assert upstream_of(gateway, fakes, "deepseek/deepseek-v5") == f"localhost_{deepseek}"
    finish(opened)


def test_an_edit_that_fails_anywhere_keeps_the_gateway_serving(streaming_gateway, fakes):
    """A base_url port out of range (`check` refuses it; it used to stop `extproc up`), then a
    listener port Envoy can't bind (Envoy refuses it): each is reported, the last good
    config stays in force, the open stream ends whole, and the next good edit applies."""
    gateway, deepseek = streaming_gateway, port_of(fakes[1])
    opened = streams(gateway, ("claude-sonnet-4-5", "PACE-1300"))
    lines = edit(gateway, {fakes[1].url: "http://localhost:70000"}, "stays in force")
    message = "base_url: port 70000 is out of range: must be between 1 and 65535"
    assert any(message in line for line in lines), lines
    assert upstream_of(gateway, fakes, "deepseek/deepseek-chat") == f"127_0_0_1_{deepseek}"

    listener = f"port: {gateway.port}\n"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"port: {taken.getsockname()[1]}\n"
        lines = edit(
            gateway, {"localhost:70000": f"127.0.0.1:{deepseek}", listener: busy}, "stays in force"
        )
    assert any("Envoy rejected the new listeners.yaml" in line for line in lines), lines
    assert upstream_of(gateway, fakes, "deepseek/deepseek-chat") == f"127_0_0_1_{deepseek}"

    v4 = provider(
        "deepseek/deepseek-v4", f"http://localhost:{deepseek}/anthropic", "TEST_DEEPSEEK_KEY"
    )
    edit(gateway, {busy: listener, **v4}, "models applied")
    assert upstream_of(gateway, fakes, "deepseek/deepseek-v4") == f"localhost_{deepseek}"
    finish(opened)


def test_a_sidecar_that_restarts_while_an_edit_is_invalid_serves_the_last_good_config(
    streaming_gateway, fakes
):
    """The sidecar reads `up`'s copy of the last config it accepted, never config.yaml as it
    is: killed while the file holds an invalid edit, it comes back and serves (it used to read
    the invalid file, exit, and be started again and again, every request a 503)."""
    gateway = streaming_gateway
    health = load(gateway.config_path).sidecar.health_url
    edit(gateway, {"default: true": "default: maybe"}, "expected true or false")
    before = len(gateway.output)
    os.kill(sidecar_pid(gateway), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not any("restarting it in" in line for line in gateway.output[before:]):
        assert time.monotonic() < deadline, "\n".join(gateway.output[before:])
        time.sleep(0.1)
    wait_until(f"{health}/ready")
    deepseek = f"127_0_0_1_{port_of(fakes[1])}"
    assert upstream_of(gateway, fakes, "deepseek/deepseek-chat") == deepseek
    assert sum("sidecar" in line and "restarting it in" in line for line in gateway.output) == 1


ROUTES_VERSION = "http.llm.rds.llm.version_text"
"""The version of the routes Envoy has in force (`extproc up` gives them to it by RDS)."""


def envoy_stats(gateway, *names: str) -> dict[str, str]:
    """Envoy's admin stats of these exact names."""
    admin = load(gateway.config_path).listener.admin_port
    pattern = "^(" + "|".join(name.replace(".", r"\.") for name in names) + ")$"
    text = httpx.get(f"http://127.0.0.1:{admin}/stats", params={"filter": pattern}).text
    return dict(line.split(": ", 1) for line in text.splitlines())


def answered_by(connection: http.client.HTTPConnection, model: str, text: str) -> str:
    """Ask `model` on the kept-alive `connection`: the model that answered (200 only)."""
    body = json.dumps(chat(model, text)).encode()
    connection.request("POST", "/v1/messages", body, {**KEY, "content-type": "application/json"})
    response = connection.getresponse()
    answer = response.read().decode()
    assert response.status == 200, answer
    return response.getheader("x-extproc-model")


def test_an_edit_to_the_failover_chains_leaves_the_listener_and_its_connections(
    failover_gateway, fakes
):
    """A fallback added to deepseek-chat while a kept-alive connection and a stream are open:
    Envoy takes the new routes in place (RDS), its listener is not modified (a new one would
    drain every open connection: it used to be), the stream ends whole, and on the same
    connection a request whose head now fails (429) is served by the new fallback, where just
    before the edit the default served it."""
    gateway, (anthropic_fake, deepseek_fake, openai_fake) = failover_gateway, fakes
    listener = ("listener_manager.listener_modified", "listener_manager.lds.version_text")
    before = envoy_stats(gateway, *listener, ROUTES_VERSION)
    opened = streams(gateway, ("claude-sonnet-4-5", "PACE-1000"))
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        assert answered_by(connection, "deepseek/deepseek-chat", "hi") == "deepseek/deepseek-chat"
        assert connection.sock is not None
        kept = connection.sock.getsockname()
        deepseek_fake.failure = "429"
        assert (
            answered_by(connection, "deepseek/deepseek-chat", "hi") == "anthropic/claude-sonnet-4-5"
        )
        key = "    access_key: $TEST_DEEPSEEK_KEY\n"
        edit(gateway, {key: f"{key}    fallbacks: [openai/gpt-4.1]\n"}, "models applied")
        marker = f"MARK-{time.monotonic_ns()}"
        assert answered_by(connection, "deepseek/deepseek-chat", marker) == "openai/gpt-4.1"
        assert any(marker.encode() in r.body for r in deepseek_fake.received)
        assert any(marker.encode() in r.body for r in openai_fake.received)
        assert not any(marker.encode() in r.body for r in anthropic_fake.received)
        assert connection.sock is not None and connection.sock.getsockname() == kept
    finally:
        deepseek_fake.failure = None
        connection.close()
    finish(opened)
    after = envoy_stats(gateway, *listener, ROUTES_VERSION)
    assert [after[name] for name in listener] == [before[name] for name in listener]
    assert after.get(ROUTES_VERSION, "none") != before.get(ROUTES_VERSION, "none")
