"""The sidecar dropped into a shared Envoy, run for real: the plain-Envoy fragment shape and
the shape Envoy Gateway generates, with deploy/envoy-gateway/failover.yaml's patches applied.
Each routes a native and a translated request through the real sidecar to the fakes, fails a
rate-limited candidate over to the next, and a request to another virtual host on the same
listener reaches its own service untouched: the sidecar never sees it, so no provider key can
be added to it."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from extproc.commands.up import envoy_command
from extproc.config import Config, parse
from extproc.control.envoy_config import (
    EXTPROC_FILTER,
    access_log_format,
    enabled_route,
    fragment,
    scoped_extproc_filter,
)
from extproc.control.mesh_failover import (
    EG_EXTPROC_CLUSTER,
    EG_FILTER,
    eg_rule_cluster,
    envoy_gateway_failover,
)
from extproc.providers.upstream import CLUSTER_HEADER, origins
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import PROVIDER_KEYS, free_port
from tests.support.mesh import apply_envoy_patch_policy
from tests.support.processes import serve, wait_until
from tests.support.requests import chat

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}
NAMESPACE = "io.extproc"  # Envoy Gateway refuses envoy.filters.http.* for an ext_proc's metadata
CLAUDE_HOST, APP_HOST = "claude.internal", "app.internal"
USER_AUTH = "Bearer user-own-token-for-app"


def sidecar_config(anthropic: FakeAnthropic, openai: FakeOpenAI, port: int, health: int) -> str:
    """No router model (no routes to choose among): every request is routed by its model name.
    Failover on, as in deploy/kubernetes (gpt-4.1, then the default); no cooldown, so that a
    candidate failed in one shape is still tried first in the next."""
    return f"""\
routing:
  model_dir: /nonexistent/extproc-mesh-test
listener:
  cooldown_max_s: 0
sidecar:
  address: localhost
  listen_address: 127.0.0.1
  port: {port}
  health_port: {health}
  metadata_namespace: {NAMESPACE}
llm_providers:
  - model: anthropic/claude-sonnet-4-5
    base_url: {anthropic.url}
    access_key: $TEST_ANTHROPIC_KEY
    default: true
  - model: openai/gpt-4.1
    base_url: {openai.url}/v1
    provider_interface: openai-chat
    access_key: $TEST_OPENAI_KEY
"""


def static_cluster(name: str, port: int, http2: bool = False, dns: bool = False) -> dict[str, Any]:
    """One endpoint on the loopback; with `dns`, found by name as Envoy Gateway's cluster of
    a Backend's FQDN is (its host then has a name, which auto_host_rewrite uses)."""
    address = {"socket_address": {"address": "127.0.0.1", "port_value": port}}
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STRICT_DNS" if dns else "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }
    if http2:
        options = {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": options
        }
    return cluster


def app_host(app: FakeAnthropic) -> dict[str, Any]:
    """Another team's service on the same listener."""
    route = {"match": {"prefix": "/"}, "route": {"cluster": "app"}}
    return {"name": "app", "domains": [APP_HOST], "routes": [route]}


def bootstrap(
    config: Config,
    listen: int,
    admin: int,
    access_log: Path,
    virtual_hosts: list[dict[str, Any]],
    http_filters: list[dict[str, Any]],
    clusters: list[dict[str, Any]],
    early: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    manager: dict[str, Any] = {
        "@type": HCM,
        "stat_prefix": "shared",
        "access_log": [
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": str(access_log),
                    "log_format": {"json_format": access_log_format(config)},
                },
            }
        ],
        "route_config": {"name": "shared", "virtual_hosts": virtual_hosts},
        "http_filters": [*http_filters, ROUTER],
    }
    if early:
        manager["early_header_mutation_extensions"] = early
    listener = {
        "name": "shared",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
        "per_connection_buffer_limit_bytes": config.listener.max_body_bytes,
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": [listener], "clusters": clusters},
    }


def fragment_shape(config: Config, app: FakeAnthropic, **ports: Any) -> dict[str, Any]:
    """docs/mesh.md's plain Envoy: `render-envoy --fragment`'s pieces merged into a listener
    that also serves another virtual host."""
    pieces = yaml.safe_load(fragment(config))
    claude = {"name": "claude", "domains": [CLAUDE_HOST], "routes": pieces["routes"]}
    return bootstrap(
        config,
        virtual_hosts=[claude, app_host(app)],
        http_filters=pieces["http_filters"],
        clusters=[*pieces["clusters"], static_cluster("app", app.port)],
        early=pieces["early_header_mutation_extensions"],
        **ports,
    )


def gateway_shape(config: Config, app: FakeAnthropic, **ports: Any) -> dict[str, Any]:
    """What Envoy Gateway generates from deploy/envoy-gateway/: the ext_proc filter named
    after the policy, off at the connection manager and on for each rule of the LLM HTTPRoute;
    one rule per provider matching the header the sidecar sets, each with its own cluster
    and hostname rewrite, and a catch-all rule so that every request reaches the filter;
    then the EnvoyPatchPolicy's chain routes and slot clusters (deploy/envoy-gateway)."""
    ext_proc = scoped_extproc_filter(config)
    ext_proc["name"] = EG_FILTER
    ext_proc["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] = EG_EXTPROC_CLUSTER
    enable = enabled_route(config)["typed_per_filter_config"][EXTPROC_FILTER]
    timeouts = {"timeout": "0s", "idle_timeout": f"{config.listener.idle_timeout_s}s"}
    routes, clusters = [], [static_cluster(EG_EXTPROC_CLUSTER, config.sidecar.port, http2=True)]
    for i, (value, origin) in enumerate(origins(config).items()):
        name = eg_rule_cluster(i)
        header = {"name": CLUSTER_HEADER, "string_match": {"exact": value}}
        host = {"host_rewrite_literal": f"{origin.host}:{origin.port}"}
        routes.append(
            {
                "name": name,
                "match": {"prefix": "/", "headers": [header]},
                "route": {"cluster": name, **host, **timeouts},
                "typed_per_filter_config": {EG_FILTER: enable},
            }
        )
        clusters.append(static_cluster(name, origin.port, dns=True))
    default = routes[0]["route"]  # the catch-all goes where pass-through goes: Anthropic
    routes.append(
        {
            "name": "httproute/llm/claude/rule/catch-all",
            "match": {"prefix": "/"},
            "route": default,
            "typed_per_filter_config": {EG_FILTER: enable},
        }
    )
    claude = {"name": "claude", "domains": [CLAUDE_HOST], "routes": routes}
    route_config = {"virtual_hosts": [claude]}
    apply_envoy_patch_policy(envoy_gateway_failover(config), route_config, clusters)
    return bootstrap(
        config,
        virtual_hosts=[claude, app_host(app)],
        http_filters=[ext_proc],
        clusters=[*clusters, static_cluster("app", app.port)],
        # ClientTrafficPolicy's headers.earlyRequestHeaders.remove
        early=yaml.safe_load(fragment(config))["early_header_mutation_extensions"],
        **ports,
    )


@pytest.fixture(scope="module")
def mesh_sidecar(fake_anthropic, fake_openai, tmp_path_factory) -> Iterator[Config]:
    """One `extproc serve`, as a Deployment would run it, shared by every shape."""
    port, health = free_port(), free_port()
    text = sidecar_config(fake_anthropic, fake_openai, port, health)
    path = tmp_path_factory.mktemp("mesh") / "config.yaml"
    path.write_text(text, encoding="utf-8")
    sidecar = serve(path)
    try:
        wait_until(f"http://127.0.0.1:{health}/ready")
        yield parse(text, str(path))
    finally:
        sidecar.kill()
        sidecar.wait()


@pytest.fixture
def app() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic().start()
    yield fake
    fake.stop()


SHAPES: dict[str, Callable[..., dict[str, Any]]] = {
    "plain Envoy fragment": fragment_shape,
    "Envoy Gateway": gateway_shape,
}


@pytest.fixture(params=SHAPES)
def shared_envoy(request, mesh_sidecar, app, tmp_path) -> Iterator[tuple[str, Path]]:
    listen, admin = free_port(), free_port()
    access_log = tmp_path / "access.log"
    shape = SHAPES[request.param](
        mesh_sidecar, app, listen=listen, admin=admin, access_log=access_log
    )
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(shape), encoding="utf-8")
    envoy = subprocess.Popen(envoy_command(path), stderr=subprocess.PIPE)
    try:
        wait_until(f"http://127.0.0.1:{admin}/ready")
        yield f"http://127.0.0.1:{listen}", access_log
    finally:
        envoy.kill()
        envoy.wait()


def decisions(access_log: Path, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        text = access_log.read_text() if access_log.exists() else ""
        lines = [json.loads(line) for line in text.splitlines()]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


CLIENT = {"x-api-key": "sk-ant-client-own-key", "anthropic-version": "2023-06-01"}


def test_routes_native_and_translated_and_leaves_other_hosts_alone(
    shared_envoy, fakes, app, mesh_sidecar
):
    url, access_log = shared_envoy
    anthropic, _, openai = fakes
    claude = {**CLIENT, "host": CLAUDE_HOST}

    native = httpx.post(f"{url}/v1/messages", json=chat(), headers=claude, timeout=30)
    assert native.status_code == 200, native.text
    assert native.json()["content"][0]["text"] == anthropic.answer
    (sent,) = anthropic.received
    assert sent.headers["x-api-key"] == PROVIDER_KEYS["TEST_ANTHROPIC_KEY"]
    assert sent.headers["host"].startswith("127.0.0.1")  # the provider's host, not the gateway's

    translated = httpx.post(
        f"{url}/v1/messages", json=chat("openai/gpt-4.1"), headers=claude, timeout=30
    )
    assert translated.status_code == 200, translated.text
    assert translated.json()["type"] == "message"  # Anthropic format: the answer was translated
    (sent,) = openai.received
    assert sent.headers["authorization"] == f"Bearer {PROVIDER_KEYS['TEST_OPENAI_KEY']}"
    assert sent.headers["host"].startswith("127.0.0.1")

    # Another service on the same listener: a GET and a Messages-shaped POST, with the
    # client's own credentials and a cluster header of its own choosing.
    own = {"host": APP_HOST, "authorization": USER_AUTH, "x-team": "app"}
    steer = {CLUSTER_HEADER: next(iter(origins(mesh_sidecar)))}
    assert httpx.get(f"{url}/v1/models", headers={**own, **steer}).status_code == 200
    body = json.dumps(chat("openai/gpt-4.1")).encode()
    posted = httpx.post(f"{url}/v1/messages", content=body, headers=own, timeout=30)
    assert posted.status_code == 200
    got, post = app.received
    for received in (got, post):
        assert received.headers["authorization"] == USER_AUTH
        assert received.headers["x-team"] == "app"
        assert "x-api-key" not in received.headers
        assert received.headers["host"] == APP_HOST
    assert post.body == body  # not rewritten, not translated
    assert len(anthropic.received) == len(openai.received) == 1

    logged = decisions(access_log, 4)
    routed = [entry.get("routed_model") for entry in logged]
    assert routed[:2] == ["anthropic/claude-sonnet-4-5", "openai/gpt-4.1"]
    assert routed[2:] == [None, None]  # the sidecar never saw the other host's requests


def test_a_rate_limited_candidate_is_served_by_the_next(shared_envoy, fakes):
    """gpt-4.1 answers 429: Envoy retries on the chain's next slot, where the sidecar's
    upstream filter rewrites the request for Anthropic, with Anthropic's key alone."""
    url, access_log = shared_envoy
    anthropic, _, openai = fakes
    openai.failure = "429"
    try:
        answer = httpx.post(
            f"{url}/v1/messages",
            json=chat("openai/gpt-4.1"),
            headers={**CLIENT, "host": CLAUDE_HOST},
            timeout=30,
        )
    finally:
        openai.failure = None
    assert answer.status_code == 200, answer.text
    assert answer.json()["content"][0]["text"] == anthropic.answer
    (failed,) = openai.received
    assert failed.headers["authorization"] == f"Bearer {PROVIDER_KEYS['TEST_OPENAI_KEY']}"
    (served,) = anthropic.received
    assert served.headers["x-api-key"] == PROVIDER_KEYS["TEST_ANTHROPIC_KEY"]
    assert "authorization" not in served.headers
    assert served.json()["model"] == "claude-sonnet-4-5"
    (logged,) = decisions(access_log, 1)
    assert logged["attempts"] == 2
    assert logged["upstream"] == "fo__anthropic_claude-sonnet-4-5"


def test_a_client_cluster_header_is_removed_before_routing(shared_envoy, app, mesh_sidecar):
    """Only the sidecar picks a provider: the shared connection manager removes a client's
    own x-extproc-cluster before routing (Envoy Gateway: ClientTrafficPolicy's early headers)."""
    url, _ = shared_envoy
    steer = {CLUSTER_HEADER: next(iter(origins(mesh_sidecar))), "host": APP_HOST}
    assert httpx.get(f"{url}/v1/models", headers=steer).status_code == 200
    (received,) = app.received
    assert CLUSTER_HEADER not in received.headers


async def test_a_reload_keeps_the_running_sidecar_settings(tmp_path, fake_anthropic, fake_openai):
    """Envoy's filter reads the decision from the namespace it was rendered with: a SIGHUP
    reload must not move it (nor rebind ports) under a running Envoy."""
    from extproc.app import Sidecar

    path = tmp_path / "config.yaml"
    text = sidecar_config(fake_anthropic, fake_openai, free_port(), free_port())
    path.write_text(text, encoding="utf-8")
    sidecar = Sidecar(parse(text, str(path)))
    await sidecar.loading
    path.write_text(text.replace(NAMESPACE, "io.elsewhere") + "  - model: openai/o4-mini\n")
    sidecar.reload()
    await sidecar.loading
    reloaded = sidecar.server.runtime.config
    assert len(reloaded.providers) == 3  # the rest of the edit applies
    assert reloaded.sidecar.metadata_namespace == NAMESPACE
