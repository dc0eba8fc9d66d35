"""deploy/: every manifest validated offline, every embedded Envoy config accepted by Envoy,
and every example kept in step with what `extproc render-envoy` makes of its config.yaml.

Core Kubernetes resources are checked against the API's own schemas (kubernetes-validate, strict:
an unknown field fails); Istio's against the models generated from Istio's CRDs
(cloudcoil-models-istio); Envoy Gateway's CRDs ship in no package, so their resources are
checked here field by field against what the sidecar needs (docs/mesh.md says which)."""

from __future__ import annotations

import copy
import dataclasses
import functools
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from extproc.commands.cli import main
from extproc.config import Config, parse
from extproc.control.envoy_config import (
    EXTPROC_FILTER,
    FAILFAST_CLUSTER,
    GATEWAY_RESPONSE_HEADERS,
    access_log_format,
    fragment,
)
from extproc.control.mesh_failover import (
    EG_EXTPROC_CLUSTER,
    EG_FILTER,
    EG_ROUTE_CONFIG,
    FAILOVER_RESOURCE,
    mesh_failover,
)
from extproc.providers.chains import CHAIN_HEADER, FAILOVER_PREFIX, HEAD_PREFIX
from extproc.providers.upstream import CLUSTER_HEADER, origins
from tests.support import ROOT, load_yaml
from tests.support.envoy import validate
from tests.support.mesh import apply_envoy_patch_policy, apply_istio_failover

DEPLOY = ROOT / "deploy"
NOT_MANIFESTS = {"kustomization.yaml", "config.yaml", "helm-values.yaml"}
CRD_GROUPS = {"gateway.networking.k8s.io", "gateway.envoyproxy.io", "networking.istio.io"}
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")  # preStop's sleep action needs 1.30


def istio_kinds() -> dict[tuple[str, str], Any]:
    """The CRD models by apiVersion and kind. Imported here, not with the file: cloudcoil's
    package imports every Istio API group (1.6 s of CPU), which only one test needs."""
    from cloudcoil.models.istio.networking import v1 as istio_v1
    from cloudcoil.models.istio.networking import v1alpha3 as istio_v1alpha3

    return {
        ("networking.istio.io/v1alpha3", "EnvoyFilter"): istio_v1alpha3.EnvoyFilter,
        ("networking.istio.io/v1", "VirtualService"): istio_v1.VirtualService,
        ("networking.istio.io/v1", "Gateway"): istio_v1.Gateway,
        ("networking.istio.io/v1", "ServiceEntry"): istio_v1.ServiceEntry,
        ("networking.istio.io/v1", "DestinationRule"): istio_v1.DestinationRule,
    }


@functools.cache
def parsed(path: Path) -> tuple[dict[str, Any], ...]:
    """Each file parsed once a run: PyYAML took seconds re-reading deploy/ for every test."""
    return tuple(doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc)


def documents(path: Path) -> list[dict[str, Any]]:
    """A copy of the file's documents, for the test to change."""
    return copy.deepcopy(list(parsed(path)))


def manifests(under: Path = DEPLOY) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.relative_to(DEPLOY)}#{i}", doc)
        for path in sorted(under.rglob("*.yaml"))
        if path.name not in NOT_MANIFESTS and path.parent.name != "envoy"
        for i, doc in enumerate(documents(path))
    ]


def one(kind: str, under: Path = DEPLOY, name: str | None = None) -> dict[str, Any]:
    (found,) = [
        doc
        for _, doc in manifests(under)
        if doc["kind"] == kind and name in (None, doc["metadata"]["name"])
    ]
    return found


def secret_env() -> dict[str, str]:
    return one("Secret")["stringData"]


def variant_config(variant: str, monkeypatch) -> Config:
    for key, value in secret_env().items():
        monkeypatch.setenv(key, value)
    path = DEPLOY / "kubernetes" / variant / "config.yaml"
    config = parse(path.read_text(encoding="utf-8"), str(path))
    assert not config.warnings
    return config


@pytest.fixture
def cpu_config(monkeypatch) -> Config:
    return variant_config("cpu", monkeypatch)


def group(doc: dict[str, Any]) -> str:
    return doc["apiVersion"].rpartition("/")[0]


# ------------------------------------------------------------------ schemas


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_resources_pass_the_api_schema(version):
    checked = set()
    for where, doc in manifests():
        if group(doc) in CRD_GROUPS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{where} ({doc['kind']}): {error}")
        checked.add(doc["kind"])
    assert checked >= {
        "Namespace",
        "Deployment",
        "Service",
        "Secret",
        "NetworkPolicy",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceAccount",
    }


def test_istio_resources_pass_istios_crd_models():
    """Models generated from Istio's CRD schemas: a string where an object belongs fails; the
    models ignore unknown fields, so a resource must also survive the round trip unchanged."""
    checked = 0
    kinds = istio_kinds()
    for where, doc in manifests(DEPLOY / "istio"):
        model = kinds.get((doc["apiVersion"], doc["kind"]))
        if model is None:
            assert group(doc) not in CRD_GROUPS, where
            continue
        parsed = model.model_validate(doc)
        dumped = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
        assert dumped == doc, f"{where}: a field Istio's schema does not have"
        checked += 1
    assert checked == 7


def test_every_kustomization_names_files_that_exist():
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        spec = load_yaml(kustomization.read_text(encoding="utf-8"))
        for resource in spec.get("resources", []):
            assert (kustomization.parent / resource).exists(), f"{kustomization}: {resource}"
        for generator in spec.get("configMapGenerator", []):
            for file in generator["files"]:
                assert (kustomization.parent / file).exists(), f"{kustomization}: {file}"
    listed = {
        (k.parent / r).resolve()
        for k in DEPLOY.rglob("kustomization.yaml")
        for r in load_yaml(k.read_text())["resources"]
    }
    for path in DEPLOY.rglob("*.yaml"):
        if path.name not in NOT_MANIFESTS and path.parent.name != "envoy":
            assert path.resolve() in listed, f"{path} is in no kustomization"


# ------------------------------------------------------------------ the sidecar in Kubernetes


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


WARM_MODEL_MIB = {"cpu": 2043, "gpu": 1211}
"""Host memory of one worker with its model loaded and warm (docs/benchmarks.md)."""


def mebibytes(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_the_deployment_serves_its_config(variant, monkeypatch):
    config = variant_config(variant, monkeypatch)
    under = DEPLOY / "kubernetes" / variant
    deployment = one("Deployment", under)
    pod = deployment["spec"]["template"]["spec"]
    main = container(deployment)
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"grpc": config.sidecar.port, "health": config.sidecar.health_port}
    assert config.sidecar.bind_address == "0.0.0.0"
    for probe, path in (("startupProbe", "/ready"), ("readinessProbe", "/ready")):
        assert main[probe]["httpGet"] == {"path": path, "port": "health"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    # The model loads before /ready: the start-up probe allows minutes, not liveness' seconds.
    startup = main["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    # SIGTERM comes after preStop; the drain (--grace) must end before the kill.
    grace = float(flag(main["args"], "--grace"))
    pre_stop = main["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + grace
    # Keys from the Secret, config.yaml from the generated ConfigMap, mounted where serve reads.
    assert main["envFrom"] == [{"secretRef": {"name": one("Secret")["metadata"]["name"]}}]
    kustomization = load_yaml((under / "kustomization.yaml").read_text())
    (generator,) = kustomization["configMapGenerator"]
    assert generator["files"] == ["config.yaml"]
    (volume,) = pod["volumes"]
    assert volume["configMap"]["name"] == generator["name"]
    (mount,) = main["volumeMounts"]
    assert mount["name"] == volume["name"]
    assert main["args"][:3] == ["extproc", "serve", f"{mount['mountPath']}/config.yaml"]
    # Each worker loads its own model, and takes a core.
    workers = int(flag(main["args"], "--workers"))
    resources = main["resources"]
    assert mebibytes(resources["requests"]["memory"]) >= workers * WARM_MODEL_MIB[variant]
    assert float(resources["requests"]["cpu"]) >= workers
    assert "cpu" not in resources["limits"]  # throttling a router decision only slows it
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    if variant == "gpu":
        assert config.routing.device == "cuda"
        assert resources["limits"]["nvidia.com/gpu"] == 1
        assert pod["nodeSelector"]
    else:
        assert config.routing.device == "cpu"
        hpa = one("HorizontalPodAutoscaler", under)
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert hpa["spec"]["minReplicas"] >= 2
        pdb = one("PodDisruptionBudget", under)
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_services_and_network_policy_fit_the_pods(cpu_config):
    template = one("Deployment", DEPLOY / "kubernetes" / "cpu")["spec"]["template"]
    pod_labels = template["metadata"]["labels"]
    service = one("Service", DEPLOY / "kubernetes", "extproc")
    headless = one("Service", DEPLOY / "kubernetes", "extproc-headless")
    for svc in (service, headless):
        assert svc["spec"]["selector"].items() <= pod_labels.items()
        grpc = next(p for p in svc["spec"]["ports"] if p["targetPort"] == "grpc")
        # Istio speaks HTTP/2 to a port named grpc (or with appProtocol grpc).
        assert grpc["name"] == "grpc"
        assert grpc["appProtocol"] == "grpc"
        assert grpc["port"] == cpu_config.sidecar.port
    # A plain Envoy resolves the headless name: one endpoint per pod, not one per Service IP.
    assert headless["spec"]["clusterIP"] == "None"
    assert cpu_config.sidecar.address.startswith(f"{headless['metadata']['name']}.llm.svc")
    policy = one("NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    grpc_rule, health_rule = policy["spec"]["ingress"]
    assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    assert grpc_rule["from"]  # only the Envoys listed
    # An empty namespaceSelector admits a pod label from every namespace: anyone who may
    # create a pod anywhere could reach the port, whose replies carry provider keys.
    assert not any(peer.get("namespaceSelector") == {} for peer in grpc_rule["from"])
    assert health_rule["ports"] == [{"port": "health", "protocol": "TCP"}]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["egress"] == []  # the sidecar calls nothing; Envoy calls providers
    istio_gateway = one("Deployment", DEPLOY / "istio")
    gateway_labels = istio_gateway["spec"]["template"]["metadata"]["labels"]
    assert any(
        peer.get("podSelector", {}).get("matchLabels", {}).items() <= gateway_labels.items()
        and "namespaceSelector" not in peer
        for peer in grpc_rule["from"]
    )


# ------------------------------------------------------------------ plain Envoy


def manager_of(bootstrap: dict[str, Any]) -> dict[str, Any]:
    listener = bootstrap["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def test_plain_envoy_example_passes_envoy_validate_and_holds_the_fragment(cpu_config):
    path = DEPLOY / "envoy" / "envoy.yaml"
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    pieces = load_yaml(fragment(cpu_config))
    bootstrap = load_yaml(path.read_text())
    manager = manager_of(bootstrap)
    assert manager["http_filters"][0] == pieces["http_filters"][0]
    assert manager["http_filters"][0]["disabled"] is True  # on for the claude host only
    # Envoy presents the Secret's EXTPROC_SIDECAR_SECRET, without which the sidecar refuses it.
    grpc_service = manager["http_filters"][0]["typed_config"]["grpc_service"]
    secret = secret_env()["EXTPROC_SIDECAR_SECRET"]
    assert grpc_service["initial_metadata"] == [{"key": "x-extproc-secret", "value": secret}]
    hosts = {h["name"]: h for h in manager["route_config"]["virtual_hosts"]}
    assert hosts["claude"]["routes"] == pieces["routes"]
    assert len(hosts) > 1
    assert manager["early_header_mutation_extensions"] == pieces["early_header_mutation_extensions"]
    log_format = manager["access_log"][0]["typed_config"]["log_format"]["json_format"]
    assert log_format == pieces["access_log_format"]
    clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
    for cluster in pieces["clusters"]:
        assert clusters[cluster["name"]] == cluster
    assert clusters["extproc"]["type"] == "STRICT_DNS"
    *chain_routes, route = hosts["claude"]["routes"]
    assert len(chain_routes) == 4  # two chains (gpt-4.1 and haiku, then sonnet), streamed or not
    assert route["response_headers_to_remove"] == list(GATEWAY_RESPONSE_HEADERS)
    listener = bootstrap["static_resources"]["listeners"][0]
    assert listener["per_connection_buffer_limit_bytes"] >= cpu_config.listener.max_body_bytes


# ------------------------------------------------------------------ failover in a mesh


def rendered_failover(config: Config) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The fragment's chain routes (without its per-route switch for the filter) and the
    fail-fast and slot clusters, in the fragment's order."""
    pieces = load_yaml(fragment(config))
    routes = [
        {k: v for k, v in route.items() if k != "typed_per_filter_config"}
        for route in pieces["routes"][:-1]
    ]
    slots = [
        cluster
        for cluster in pieces["clusters"]
        if cluster["name"] == FAILFAST_CLUSTER
        or cluster["name"].startswith((FAILOVER_PREFIX, HEAD_PREFIX))
    ]
    return routes, slots


def in_mesh(cluster: dict[str, Any], origins_named: dict[str, str], sidecar: str) -> dict[str, Any]:
    """A rendered slot as the mesh must get it: over the mesh's cluster of its provider
    origin, its upstream ext_proc filter calling the mesh's cluster of the sidecar."""
    cluster = copy.deepcopy(cluster)
    if "cluster_type" in cluster:
        members = cluster["cluster_type"]["typed_config"]["clusters"]
        origin, failfast = members
        assert failfast == FAILFAST_CLUSTER
        members[0] = origins_named[origin]
    for options in cluster.get("typed_extension_protocol_options", {}).values():
        first, *_ = options["http_filters"]
        if "grpc_service" in first["typed_config"]:  # a fo__ slot's ext_proc, not p__'s Lua
            first["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] = sidecar
    return cluster


def mesh_bootstrap(
    config: Config, origins_named: dict[str, str], sidecar: str
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """deploy/envoy/envoy.yaml as a mesh's gateway has it before our failover resource: the
    Claude Code host with the cluster-header route only (the mesh's own routes stand in),
    no slots, and the mesh's names for the sidecar's and the providers' clusters. Returns
    the bootstrap, that virtual host and the clusters."""
    bootstrap = load_yaml((DEPLOY / "envoy" / "envoy.yaml").read_text())
    hosts = {h["name"]: h for h in manager_of(bootstrap)["route_config"]["virtual_hosts"]}
    claude = hosts["claude"]
    claude["routes"] = [r for r in claude["routes"] if r.get("name") == "extproc"]
    _, slots = rendered_failover(config)
    renames = {**origins_named, "extproc": sidecar}
    clusters = []
    for cluster in bootstrap["static_resources"]["clusters"]:
        if cluster["name"] in {slot["name"] for slot in slots}:
            continue
        name = renames.get(cluster["name"], cluster["name"])
        cluster["name"] = name
        if "load_assignment" in cluster:
            cluster["load_assignment"]["cluster_name"] = name
        clusters.append(cluster)
    bootstrap["static_resources"]["clusters"] = clusters
    return bootstrap, claude, clusters


def envoy_accepts(bootstrap: dict[str, Any], path: Path) -> None:
    path.write_text(yaml.safe_dump(bootstrap))
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ Istio

ISTIO_EXTPROC_CLUSTER = "outbound|50051||extproc.llm.svc.cluster.local"


def istio_patches() -> dict[str, dict[str, Any]]:
    envoy_filter = one("EnvoyFilter", name="extproc")
    return {p["applyTo"]: p for p in envoy_filter["spec"]["configPatches"]}


def istio_outbound(config: Config) -> dict[str, str]:
    """Each provider origin's cluster: Istio's for the ServiceEntry's host and port."""
    return {name: f"outbound|{o.port}||{o.host}" for name, o in origins(config).items()}


def test_istio_envoyfilter_is_scoped_to_the_claude_port(cpu_config):
    gateway = one("Gateway", DEPLOY / "istio")
    (server,) = gateway["spec"]["servers"]
    for name in ("extproc", FAILOVER_RESOURCE):
        envoy_filter = one("EnvoyFilter", name=name)
        selector = envoy_filter["spec"]["workloadSelector"]["labels"]
        assert selector == gateway["spec"]["selector"]
        for patch in envoy_filter["spec"]["configPatches"]:
            # GATEWAY: SIDECAR_INBOUND listeners never route to the providers.
            assert patch["match"]["context"] == "GATEWAY"
            if patch["applyTo"] == "CLUSTER":
                # A cluster belongs to no port: only the chain routes below lead to a slot.
                assert patch["match"] == {"context": "GATEWAY"}
                continue
            on = patch["match"].get("listener") or patch["match"]["routeConfiguration"]
            assert on["portNumber"] == server["port"]["number"]
    service = one("Service", DEPLOY / "istio", "llm-gateway")
    assert [p["port"] for p in service["spec"]["ports"]] == [server["port"]["number"]]


def test_istio_patches_are_the_rendered_pieces(cpu_config):
    pieces = load_yaml(fragment(cpu_config))
    patches = istio_patches()
    ext_proc = copy.deepcopy(pieces["http_filters"][0])
    del ext_proc["disabled"]  # the port match scopes it: every request on it is Claude Code's
    ext_proc["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] = ISTIO_EXTPROC_CLUSTER
    assert patches["HTTP_FILTER"]["patch"] == {"operation": "INSERT_BEFORE", "value": ext_proc}
    manager = patches["NETWORK_FILTER"]["patch"]["value"]["typed_config"]
    assert manager["early_header_mutation_extensions"] == pieces["early_header_mutation_extensions"]
    log_format = manager["access_log"][0]["typed_config"]["log_format"]["json_format"]
    assert log_format == pieces["access_log_format"]
    assert manager["stream_idle_timeout"] == f"{cpu_config.listener.idle_timeout_s}s"
    buffer = patches["LISTENER"]["patch"]["value"]["per_connection_buffer_limit_bytes"]
    assert buffer >= cpu_config.listener.max_body_bytes


def test_istio_failover_patches_are_the_rendered_chain_routes_and_slots(cpu_config):
    """Regenerate with the command in the file's header."""
    path = DEPLOY / "istio" / "failover.yaml"
    assert path.read_text() == mesh_failover(cpu_config, "istio")
    routes, slots = rendered_failover(cpu_config)
    virtual_host: dict[str, Any] = {"routes": []}
    clusters: list[dict[str, Any]] = []
    apply_istio_failover(one("EnvoyFilter", name=FAILOVER_RESOURCE), virtual_host, clusters)
    # In the rendered order once applied; no per-route switch: the filter is on for the port.
    assert virtual_host["routes"] == routes
    assert len(routes) == 4
    outbound = istio_outbound(cpu_config)
    assert clusters == [in_mesh(c, outbound, ISTIO_EXTPROC_CLUSTER) for c in slots]
    assert {c["name"] for c in clusters} == {
        FAILFAST_CLUSTER,
        "p__api_openai_com_443",
        "p__api_anthropic_com_443",
        "fo__anthropic_claude-sonnet-4-5",
    }
    # The sidecar's secret: it refuses upstream streams without it too.
    failover_slot = next(c for c in clusters if c["name"].startswith(FAILOVER_PREFIX))
    grpc_service = failover_slot["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]["http_filters"][0]["typed_config"]["grpc_service"]
    secret = secret_env()["EXTPROC_SIDECAR_SECRET"]
    assert grpc_service["initial_metadata"] == [{"key": "x-extproc-secret", "value": secret}]


@pytest.mark.parametrize("mesh", ["istio", "envoy-gateway"])
def test_render_envoy_prints_the_failover_resource_of_deploy(mesh, cpu_config, monkeypatch, capsys):
    """The command each file's header names prints the file, byte for byte (the Secret's
    variables set; Envoy Gateway's without the sidecar's secret)."""
    if mesh == "envoy-gateway":
        monkeypatch.delenv("EXTPROC_SIDECAR_SECRET")
    assert main(["render-envoy", str(cpu_config.path), "--mesh-failover", mesh]) == 0
    assert capsys.readouterr().out == (DEPLOY / mesh / "failover.yaml").read_text()


def test_istio_patches_applied_to_a_gateway_listener_pass_envoy_validate(tmp_path, cpu_config):
    """Each patch value applied as Istio applies it, to a listener like the gateway's, with the
    outbound clusters Istio makes for the extproc Service and the ServiceEntry's hosts; then
    the failover EnvoyFilter's routes and clusters."""
    patches = istio_patches()
    bootstrap, claude, clusters = mesh_bootstrap(
        cpu_config, istio_outbound(cpu_config), ISTIO_EXTPROC_CLUSTER
    )
    listener = bootstrap["static_resources"]["listeners"][0]
    listener.pop("per_connection_buffer_limit_bytes")
    listener.update(patches["LISTENER"]["patch"]["value"])
    manager = manager_of(bootstrap)
    for key in ("early_header_mutation_extensions", "access_log", "stream_idle_timeout"):
        manager.pop(key, None)
    merged = patches["NETWORK_FILTER"]["patch"]["value"]["typed_config"]
    manager.update({k: v for k, v in merged.items() if k != "@type"})
    manager["http_filters"] = [
        patches["HTTP_FILTER"]["patch"]["value"],
        manager["http_filters"][-1],
    ]
    for host in manager["route_config"]["virtual_hosts"]:
        for route in host["routes"]:
            route.pop("typed_per_filter_config", None)
    apply_istio_failover(one("EnvoyFilter", name=FAILOVER_RESOURCE), claude, clusters)
    assert len(claude["routes"]) == 5
    envoy_accepts(bootstrap, tmp_path / "istio-gateway.yaml")
    # An istiod built without the priority-group plugin's type sends its config as a
    # TypedStruct (type_url and the fields as JSON), which the gateway's Envoy reads as well.
    for route in claude["routes"][:-1]:
        extension = route["route"]["inline_cluster_specifier_plugin"]["extension"]
        fields = dict(extension["typed_config"])
        extension["typed_config"] = {
            "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
            "type_url": fields.pop("@type"),
            "value": fields,
        }
    envoy_accepts(bootstrap, tmp_path / "istio-gateway-typed-struct.yaml")


def test_istio_routes_every_provider_with_tls_and_its_own_authority(cpu_config):
    virtual_service = one("VirtualService")
    gateway = one("Gateway", DEPLOY / "istio")
    assert virtual_service["spec"]["hosts"] == gateway["spec"]["servers"][0]["hosts"]
    *by_header, catch_all = virtual_service["spec"]["http"]
    wanted = origins(cpu_config)
    routed = {}
    for rule in [*by_header, catch_all]:
        assert "timeout" not in rule  # Istio's default is none; its CRD refuses 0s
        (destination,) = rule["route"]
        host = destination["destination"]["host"]
        assert rule["rewrite"] == {"authority": host}
        # A provider's x-extproc-local-reply would tell the sidecar not to translate.
        assert rule["headers"] == {"response": {"remove": list(GATEWAY_RESPONSE_HEADERS)}}
        if rule is not catch_all:
            ((name, match),) = rule["match"][0]["headers"].items()
            assert name == CLUSTER_HEADER
            routed[match["exact"]] = (host, destination["destination"]["port"]["number"])
    assert "match" not in catch_all
    assert routed == {cluster: (o.host, o.port) for cluster, o in wanted.items()}
    entry = one("ServiceEntry")
    assert sorted(entry["spec"]["hosts"]) == sorted(o.host for o in wanted.values())
    rules = {
        r["spec"]["host"]: r
        for _, r in manifests(DEPLOY / "istio")
        if r["kind"] == "DestinationRule"
    }
    for origin in wanted.values():
        assert rules[origin.host]["spec"]["trafficPolicy"]["tls"] == {
            "mode": "SIMPLE",
            "sni": origin.host,
        }


# ------------------------------------------------------------------ Envoy Gateway

EG = DEPLOY / "envoy-gateway"


def test_envoy_gateway_policy_carries_the_rendered_filter_settings(cpu_config):
    rendered = load_yaml(fragment(cpu_config))["http_filters"][0]["typed_config"]
    policy = one("EnvoyExtensionPolicy")
    assert policy["spec"]["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "claude"}
    ]
    (ext_proc,) = policy["spec"]["extProc"]
    mode = ext_proc["processingMode"]
    # allowModeOverride belongs to processingMode, not to its response part.
    assert mode == {"request": {"body": "Buffered"}, "response": {}, "allowModeOverride": True}
    assert ext_proc["messageTimeout"] == rendered["message_timeout"]
    assert ext_proc["failOpen"] is rendered["failure_mode_allow"]
    namespaces = ext_proc["metadata"]["writableNamespaces"]
    assert namespaces == [cpu_config.sidecar.metadata_namespace]
    # Envoy Gateway's CEL rule on writableNamespaces: self.all(f, !f.startsWith('envoy.filters.http'))
    assert not any(ns.startswith("envoy.filters.http") for ns in namespaces)
    (backend,) = ext_proc["backendRefs"]
    service = one("Service", DEPLOY / "kubernetes", backend["name"])
    assert backend["port"] in [p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc"]
    values = load_yaml((EG / "helm-values.yaml").read_text())
    assert values["config"]["envoyGateway"]["extensionApis"]["enableBackend"] is True


def test_envoy_gateway_route_has_a_rule_per_provider_and_a_catch_all(cpu_config):
    route = one("HTTPRoute")
    *by_header, catch_all = route["spec"]["rules"]
    backends = {
        b["metadata"]["name"]: b["spec"] for _, b in manifests(EG) if b["kind"] == "Backend"
    }
    routed = {}
    for rule in [*by_header, catch_all]:
        assert rule["timeouts"] == {"request": "0s"}  # Envoy Gateway's default is 15 s
        (ref,) = rule["backendRefs"]
        assert ref["kind"] == "Backend"
        backend = backends[ref["name"]]
        (endpoint,) = backend["endpoints"]
        host = endpoint["fqdn"]["hostname"]
        assert endpoint["fqdn"]["port"] == ref["port"]
        assert backend["tls"] == {"wellKnownCACertificates": "System"}
        rewrite, strip = rule["filters"]
        assert rewrite == {"type": "URLRewrite", "urlRewrite": {"hostname": host}}
        assert strip == {
            "type": "ResponseHeaderModifier",
            "responseHeaderModifier": {"remove": list(GATEWAY_RESPONSE_HEADERS)},
        }
        (match,) = rule["matches"]
        assert match["path"] == {"type": "PathPrefix", "value": "/"}
        if rule is not catch_all:
            (header,) = match["headers"]
            assert header["type"] == "Exact" and header["name"] == CLUSTER_HEADER
            routed[header["value"]] = (host, ref["port"])
    assert "headers" not in catch_all["matches"][0]
    assert routed == {cluster: (o.host, o.port) for cluster, o in origins(cpu_config).items()}


def test_envoy_gateway_client_policy_and_access_log(tmp_path, cpu_config):
    client = one("ClientTrafficPolicy")
    assert mebibytes(client["spec"]["connection"]["bufferLimit"]) * 2**20 >= (
        cpu_config.listener.max_body_bytes
    )
    early = client["spec"]["headers"]["earlyRequestHeaders"]
    # Only the sidecar picks a provider or a chain; Envoy makes its own x-request-id.
    assert early == {"remove": [CLUSTER_HEADER, CHAIN_HEADER, "x-request-id"]}
    proxy = one("EnvoyProxy")
    (setting,) = proxy["spec"]["telemetry"]["accessLog"]["settings"]
    assert setting["format"]["json"] == access_log_format(cpu_config)
    # The format strings themselves, as Envoy reads them.
    bootstrap = load_yaml((DEPLOY / "envoy" / "envoy.yaml").read_text())
    manager_of(bootstrap)["access_log"][0]["typed_config"]["log_format"] = {
        "json_format": setting["format"]["json"]
    }
    path = tmp_path / "eg-access-log.yaml"
    path.write_text(yaml.safe_dump(bootstrap))
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    gateway = one("Gateway", EG)
    assert gateway["spec"]["infrastructure"]["parametersRef"]["name"] == proxy["metadata"]["name"]
    assert EXTPROC_FILTER not in cpu_config.sidecar.metadata_namespace


def eg_rule_clusters() -> dict[str, str]:
    """Each provider origin's cluster: Envoy Gateway's for the HTTPRoute rule matching it."""
    *by_header, _catch_all = one("HTTPRoute")["spec"]["rules"]
    return {
        rule["matches"][0]["headers"][0]["value"]: f"httproute/llm/claude/rule/{i}"
        for i, rule in enumerate(by_header)
    }


def test_envoy_gateway_failover_policy_is_the_rendered_chain_routes_and_slots(cpu_config):
    """Regenerate with the command in the file's header (without EXTPROC_SIDECAR_SECRET:
    Envoy Gateway's own ext_proc filter can't present it, so the sidecar runs without one)."""
    config = dataclasses.replace(cpu_config, sidecar_secret="")
    assert (EG / "failover.yaml").read_text() == mesh_failover(config, "envoy-gateway")
    policy = one("EnvoyPatchPolicy")
    gateway = one("Gateway", EG)
    assert policy["spec"]["targetRef"] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": gateway["metadata"]["name"],
    }
    # Envoy Gateway names a listener's RouteConfiguration <namespace>/<gateway>/<listener>,
    # and the policy's ext_proc filter and sidecar cluster after the policy.
    (listener,) = gateway["spec"]["listeners"]
    assert f"llm/{gateway['metadata']['name']}/{listener['name']}" == EG_ROUTE_CONFIG
    extension = one("EnvoyExtensionPolicy")["metadata"]
    assert EG_FILTER.endswith(f"/{extension['namespace']}/{extension['name']}/extproc/0")
    assert EG_EXTPROC_CLUSTER.startswith(f"envoyextensionpolicy/llm/{extension['name']}/")
    route_names = {
        p["name"] for p in policy["spec"]["jsonPatches"] if "routes" in p["operation"]["path"]
    }
    assert route_names == {EG_ROUTE_CONFIG}
    existing = {"name": "httproute/llm/claude/rule/0/match/0/claude_llm_example_com"}
    route_config: dict[str, Any] = {"virtual_hosts": [{"routes": [existing]}]}
    clusters: list[dict[str, Any]] = []
    apply_envoy_patch_policy(policy, route_config, clusters)
    routes, slots = rendered_failover(config)
    enable = {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {}}
    on = [{**route, "typed_per_filter_config": {EG_FILTER: enable}} for route in routes]
    # Ahead of the HTTPRoute's own rules, in the rendered order, with the policy's filter on.
    assert route_config["virtual_hosts"][0]["routes"] == [*on, existing]
    assert clusters == [in_mesh(c, eg_rule_clusters(), EG_EXTPROC_CLUSTER) for c in slots]
    assert "initial_metadata" not in str(clusters)
    values = load_yaml((EG / "helm-values.yaml").read_text())
    assert values["config"]["envoyGateway"]["extensionApis"]["enableEnvoyPatchPolicy"] is True


def test_envoy_gateway_failover_applied_to_the_generated_shape_passes_envoy_validate(
    tmp_path, cpu_config
):
    """The policy's patches applied to a listener shaped as Envoy Gateway generates it: the
    policy's ext_proc filter, the rule clusters, the sidecar's cluster named after the policy."""
    config = dataclasses.replace(cpu_config, sidecar_secret="")
    bootstrap, claude, clusters = mesh_bootstrap(config, eg_rule_clusters(), EG_EXTPROC_CLUSTER)
    manager = manager_of(bootstrap)
    manager["http_filters"][0]["name"] = EG_FILTER
    grpc = manager["http_filters"][0]["typed_config"]["grpc_service"]
    grpc["envoy_grpc"]["cluster_name"] = EG_EXTPROC_CLUSTER
    for route in claude["routes"]:
        route["typed_per_filter_config"] = {
            EG_FILTER: route["typed_per_filter_config"][EXTPROC_FILTER]
        }
    route_config = {"virtual_hosts": [claude]}
    apply_envoy_patch_policy(one("EnvoyPatchPolicy"), route_config, clusters)
    assert len(claude["routes"]) == 5
    envoy_accepts(bootstrap, tmp_path / "eg-gateway.yaml")
