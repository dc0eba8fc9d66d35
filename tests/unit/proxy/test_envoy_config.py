"""The rendered Envoy config: valid for the real binary, and committed without drift."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from extproc.commands.cli import main
from extproc.config import SIDECAR_SECRET_VAR, load, parse
from extproc.control.connections import fit_to_open_files, too_few_files
from extproc.control.envoy_config import (
    FAILFAST_CLUSTER,
    clusters,
    fragment,
    listener,
    render,
    route_configuration,
    versioned_sidecar_cluster,
)
from tests.support import ROOT, load_yaml
from tests.support.envoy import validate


def test_committed_envoy_yaml_matches_committed_config():
    rendered = render(load(ROOT / "config.yaml"))
    committed = (ROOT / "envoy" / "envoy.yaml").read_text(encoding="utf-8")
    assert committed == rendered, "run `extproc render-envoy` and commit envoy/envoy.yaml"


CONFIGS = {
    "committed": (ROOT / "config.yaml").read_text(encoding="utf-8"),
    "every provider kind": """\
llm_providers:
  - model: anthropic/claude-sonnet-4-5
  - model: deepseek/deepseek-chat
  - model: openai/gpt-4.1
  - model: gemini/gemini-2.5-pro
  - model: xai/grok-4
  - model: mistral/mistral-large-latest
  - model: groq/llama-3.3-70b
  - model: openrouter/anthropic/claude-3.5-sonnet
  - model: ollama/qwen3
    base_url: http://host.docker.internal:11434
  - model: acme/big
    base_url: https://llm.acme.dev:8443/v1
    provider_interface: openai
listener: {address: 0.0.0.0, port: 8080, max_body_bytes: 67108864}
routing: {timeout_ms: 20000}
""",
}


@pytest.mark.parametrize("name", CONFIGS)
def test_rendered_config_passes_envoy_validate(tmp_path, name):
    path = tmp_path / "envoy.yaml"
    path.write_text(render(parse(CONFIGS[name])), encoding="utf-8")
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def ext_proc_filter(rendered: str) -> dict:
    listener = load_yaml(rendered)["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]


def test_envoy_presents_the_sidecar_secret_on_every_ext_proc_stream(tmp_path, monkeypatch):
    monkeypatch.setenv(SIDECAR_SECRET_VAR, "s3cret-0123456789abcdef")
    rendered = render(parse(CONFIGS["committed"]))
    grpc_service = ext_proc_filter(rendered)["typed_config"]["grpc_service"]
    assert grpc_service["initial_metadata"] == [
        {"key": "x-extproc-secret", "value": "s3cret-0123456789abcdef"}
    ]
    path = tmp_path / "envoy.yaml"
    path.write_text(rendered, encoding="utf-8")
    assert validate(path).returncode == 0
    monkeypatch.delenv(SIDECAR_SECRET_VAR)
    no_secret = ext_proc_filter(render(parse(CONFIGS["committed"])))
    assert "initial_metadata" not in no_secret["typed_config"]["grpc_service"]


def report_endpoint(config) -> tuple[str, str, int]:
    """The type and address of the cluster usage.lua reports to: the sidecar's health port."""
    (report,) = [c for c in clusters(config) if c["name"] == "extproc-health"]
    endpoint = report["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    address = endpoint["address"]["socket_address"]
    return report["type"], address["address"], address["port_value"]


def test_usage_lua_reports_to_the_health_port_with_the_sidecar_secret(tmp_path, monkeypatch):
    """A secret may hold any visible character: in the Lua source each is a decimal escape."""
    sidecar = "sidecar: {health_port: 6000}\n"
    config = parse(sidecar + CONFIGS["committed"])
    assert report_endpoint(config) == ("STATIC", "127.0.0.1", 6000)
    assert report_endpoint(parse(IN_A_POD)) == (
        "STRICT_DNS",
        "extproc-grpc.llm.svc.cluster.local",
        50052,
    )
    published = parse("sidecar: {health_address: 10.0.0.9}\n" + CONFIGS["committed"])
    assert report_endpoint(published) == ("STATIC", "10.0.0.9", 50052)
    assert "extproc-health" not in {c["name"] for c in load_yaml(fragment(config))["clusters"]}
    monkeypatch.setenv(SIDECAR_SECRET_VAR, 'a"b\\c')
    rendered = render(parse(sidecar + CONFIGS["committed"]))
    lua = load_yaml(rendered)["static_resources"]["listeners"][0]["filter_chains"][0]
    source = lua["filters"][0]["typed_config"]["http_filters"][1]["typed_config"]
    assert (
        'local SECRET = "\\097\\034\\098\\092\\099"'
        in source["default_source_code"]["inline_string"]
    )
    path = tmp_path / "envoy.yaml"
    path.write_text(rendered, encoding="utf-8")
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_cluster_per_origin_with_tls_and_sni():
    bootstrap = load_yaml(render(parse(CONFIGS["every provider kind"])))
    clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
    failover = {n for n in clusters if "__" in n or n == FAILFAST_CLUSTER}
    assert set(clusters) - failover == {
        "extproc",
        "extproc-health",
        "api_anthropic_com_443",
        "api_deepseek_com_443",
        "api_openai_com_443",
        "generativelanguage_googleapis_com_443",
        "api_x_ai_443",
        "api_mistral_ai_443",
        "api_groq_com_443",
        "openrouter_ai_443",
        "host_docker_internal_11434",
        "llm_acme_dev_8443",
    }
    tls = clusters["llm_acme_dev_8443"]["transport_socket"]["typed_config"]
    assert tls["sni"] == "llm.acme.dev"
    assert "transport_socket" not in clusters["host_docker_internal_11434"]
    ext_proc = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    http_filters = ext_proc["typed_config"]["http_filters"]
    assert http_filters[0]["typed_config"]["message_timeout"] == "30s"
    assert (
        bootstrap["static_resources"]["listeners"][0]["per_connection_buffer_limit_bytes"] == 2**20
    )


def test_render_envoy_command_writes_file_and_listen_override(tmp_path, capsys):
    out = tmp_path / "envoy.yaml"
    argv = [str(ROOT / "config.yaml"), "-o", str(out), "--listen-address", "0.0.0.0"]
    assert main(["render-envoy", *argv]) == 0, capsys.readouterr().err
    listener = load_yaml(out.read_text())["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"]["address"] == "0.0.0.0"


def test_render_envoy_holds_inline_the_routes_extproc_up_delivers_apart():
    """`extproc up` hands Envoy the routes as their own resource (RDS, so that an edit to the
    failover chains leaves the listener alone); the one-file config holds the same routes in
    the same listener."""
    config = parse(CONFIGS["committed"])
    source = {
        "path_config_source": {"path": "/run/envoy/routes.yaml"},
        "resource_api_version": "V3",
    }
    inline, apart = listener(config), listener(config, routes_from=source)
    managers = [one["filter_chains"][0]["filters"][0]["typed_config"] for one in (inline, apart)]
    assert managers[0].pop("route_config") == route_configuration(config)
    assert managers[1].pop("rds") == {"route_config_name": "llm", "config_source": source}
    assert inline == apart
    rendered = load_yaml(render(config))["static_resources"]["listeners"]
    assert rendered == [listener(config)]


PLAIN_ENVOY = """\
static_resources:
  listeners:
  - name: existing
    address: {socket_address: {address: 127.0.0.1, port_value: 10000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: existing
          route_config:
            virtual_hosts:
            - name: app
              domains: ["app.local"]
              routes:
              - match: {prefix: "/"}
                direct_response: {status: 200, body: {inline_string: app}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters: []
"""


def test_fragment_embeds_into_a_plain_envoy_config(tmp_path, capsys):
    assert main(["render-envoy", str(ROOT / "config.yaml"), "--fragment"]) == 0
    pieces = load_yaml(capsys.readouterr().out)
    assert set(pieces) == {
        "http_filters",
        "routes",
        "clusters",
        "early_header_mutation_extensions",
        "access_log_format",
    }
    bootstrap = load_yaml(PLAIN_ENVOY)
    resources = bootstrap["static_resources"]
    manager = resources["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    manager["http_filters"][:0] = pieces["http_filters"]
    manager["early_header_mutation_extensions"] = pieces["early_header_mutation_extensions"]
    manager["route_config"]["virtual_hosts"].append(
        {"name": "claude", "domains": ["*"], "routes": pieces["routes"]}
    )
    manager["access_log"] = [
        {
            "name": "envoy.access_loggers.stdout",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                "log_format": {"json_format": pieces["access_log_format"]},
            },
        }
    ]
    resources["listeners"][0]["per_connection_buffer_limit_bytes"] = 32 * 1024 * 1024
    resources["clusters"] = pieces["clusters"]
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(bootstrap))
    validated = validate(path)
    assert validated.returncode == 0, validated.stdout + validated.stderr


IN_A_POD = """\
llm_providers:
  - model: anthropic/claude-sonnet-4-5
sidecar:
  address: extproc-grpc.llm.svc.cluster.local
  listen_address: 0.0.0.0
  metadata_namespace: io.extproc
"""


def test_a_service_name_gets_a_dns_cluster_that_envoy_accepts(tmp_path):
    """`sidecar.address` is where Envoy reaches the sidecar; a name is resolved (every address
    behind a headless Service becomes an endpoint), and serve binds `listen_address`."""
    config = parse(IN_A_POD)
    assert config.sidecar.bind_address == "0.0.0.0"
    bootstrap = load_yaml(render(config))
    (extproc,) = [c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "extproc"]
    assert extproc["type"] == "STRICT_DNS"
    endpoint = extproc["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["address"] == "extproc-grpc.llm.svc.cluster.local"
    path = tmp_path / "envoy.yaml"
    path.write_text(render(config), encoding="utf-8")
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("sidecar", "where", "says"),
    [
        ("{address: extproc.llm}", "sidecar.listen_address", "is a name"),
        ("{address: 0.0.0.0}", "sidecar.address", "set sidecar.listen_address: 0.0.0.0"),
        ("{address: 10.0.0.7, listen_address: extproc.llm}", "sidecar.listen_address", "IP"),
        ("{address: 'bad name!'}", "sidecar.address", "neither an IP address nor a DNS name"),
        ("{metadata_namespace: 'a:b'}", "sidecar.metadata_namespace", "letters, digits"),
    ],
)
def test_check_catches_a_sidecar_address_mixup(tmp_path, capsys, sidecar, where, says):
    path = tmp_path / "config.yaml"
    path.write_text(f"llm_providers:\n  - model: openai/gpt-4.1\nsidecar: {sidecar}\n")
    with pytest.raises(SystemExit) as exited:
        main(["check", str(path)])
    stderr = capsys.readouterr().err
    assert exited.value.code == 2, stderr
    assert f"{path}:3: {where}: " in stderr
    assert says in stderr


def test_metadata_namespace_is_the_filters_and_the_access_logs():
    bootstrap = load_yaml(render(parse(IN_A_POD)))
    manager = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    ext_proc = manager["typed_config"]["http_filters"][0]["typed_config"]
    assert ext_proc["metadata_options"]["receiving_namespaces"]["untyped"] == ["io.extproc"]
    log_format = manager["typed_config"]["access_log"][0]["typed_config"]["log_format"]
    assert (
        log_format["json_format"]["routed_model"] == "%DYNAMIC_METADATA(io.extproc:routed_model)%"
    )


# ------------------------------------------------------------------ slow and many clients


def bootstrap_of(listener: str = "") -> dict:
    return load_yaml(render(parse(f"llm_providers:\n  - model: openai/x\n{listener}")))


def downstream_limit(bootstrap: dict) -> int:
    (monitor,) = bootstrap["overload_manager"]["resource_monitors"]
    assert monitor["name"] == "envoy.resource_monitors.global_downstream_max_connections"
    return monitor["typed_config"]["max_active_downstream_connections"]


def test_client_connections_are_limited_by_the_config():
    """Envoy warned at every start that nothing limits downstream connections."""
    assert downstream_limit(bootstrap_of()) == 8192
    assert downstream_limit(bootstrap_of("listener: {max_connections: 50}\n")) == 50
    # The admin port stays reachable at the limit: `extproc up` checks readiness there.
    assert bootstrap_of()["admin"]["ignore_global_conn_limit"] is True


def test_the_connection_limit_fits_envoys_open_files_limit():
    config = parse("llm_providers:\n  - model: openai/x\n")
    assert fit_to_open_files(config, 1024).listener.max_connections == (1024 - 128) // 2
    assert fit_to_open_files(config, 100_000).listener.max_connections == 8192
    assert too_few_files(config.listener, 100_000) is None
    assert too_few_files(config.listener, 1024) == (
        "Envoy may open 1024 files (ulimit -n): enough for 448 client connections at once, "
        "not 8192 (listener.max_connections); raise the limit to serve more"
    )


def test_the_open_files_limit_is_raised_as_far_as_the_hard_limit_allows():
    script = (
        "import resource\n"
        "from extproc.control.connections import raise_open_files_limit\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 2048))\n"
        "print(raise_open_files_limit(1000), raise_open_files_limit(5000), raise_open_files_limit(10))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.stdout.split() == ["1000", "2048", "2048"], result.stderr


def test_a_slow_clients_headers_have_a_deadline():
    manager = bootstrap_of()["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    assert manager["typed_config"]["request_headers_timeout"] == "10s"
    short = bootstrap_of("listener: {request_headers_timeout_s: 3}\n")
    manager = short["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    assert manager["typed_config"]["request_headers_timeout"] == "3s"


def test_the_sidecar_cluster_is_renamed_exactly_when_its_settings_change():
    """A running Envoy resets the ext_proc streams of a cluster it modifies, so `extproc up`
    gives a changed sidecar cluster a new name; any other edit keeps the name."""
    base = "llm_providers:\n  - model: openai/gpt-4.1\n"
    name = versioned_sidecar_cluster(parse(base))
    assert name.startswith("extproc-") and len(name) == len("extproc-") + 8
    other_edits = (
        "  - model: deepseek/deepseek-chat\nrouting: {timeout_ms: 9000}\ngateway_keys: [kkkkkkkkkkkkkkkk]\n",
        "listener: {port: 8080, idle_timeout_s: 60}\n",
    )
    for more in other_edits:
        assert versioned_sidecar_cluster(parse(base + more)) == name
    for setting in ("max_concurrent_requests: 10", "max_body_bytes: 1048576"):
        assert versioned_sidecar_cluster(parse(base + f"listener: {{{setting}}}\n")) != name
    [cluster, *_] = clusters(parse(base), name)
    assert cluster["name"] == cluster["load_assignment"]["cluster_name"] == name


# ------------------------------------------------------------------ the decision on the answer


def routes_of(config_text: str) -> dict[str, dict]:
    """The gateway's route as `render` and as `fragment` write it."""
    config = parse(config_text)
    manager = load_yaml(render(config))["static_resources"]["listeners"][0]
    manager = manager["filter_chains"][0]["filters"][0]["typed_config"]
    rendered = manager["route_config"]["virtual_hosts"][0]["routes"][0]
    return {"render": rendered, "fragment": load_yaml(fragment(config))["routes"][0]}


def test_answers_carry_the_decision_from_the_metadata_and_providers_cannot_forge_it():
    for route in routes_of(IN_A_POD).values():
        assert route["response_headers_to_add"] == [
            {
                "header": {"key": name, "value": f"%DYNAMIC_METADATA(io.extproc:{field})%"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
            for name, field in [
                ("x-extproc-model", "routed_model"),
                ("x-extproc-route", "route"),
                ("x-extproc-source", "source"),
            ]
        ]
        removed = route["response_headers_to_remove"]
        assert {"x-extproc-model", "x-extproc-route", "x-extproc-source"} <= set(removed)


def test_an_operator_can_leave_the_decision_headers_out():
    config = "listener: {decision_headers: false}\nllm_providers:\n  - model: openai/x\n"
    for route in routes_of(config).values():
        assert "response_headers_to_add" not in route
        assert "x-extproc-model" in route["response_headers_to_remove"]  # still not forged
