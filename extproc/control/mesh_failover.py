"""Failover in a mesh's Envoy: the renderer's chain routes and slot clusters as an Istio
EnvoyFilter and an Envoy Gateway EnvoyPatchPolicy (docs/mesh.md, "Failover in a mesh").

Istio's VirtualService and Envoy Gateway's HTTPRoute have no field for a route's cluster
specifier plugin, nor their cluster settings one for a cluster's upstream HTTP filters, so
both pieces go in as raw xDS: `chain_routes` and `failover_clusters` of
control/envoy_config.py, unchanged but for the mesh's own names of the sidecar's cluster,
of each provider origin's cluster and of the ext_proc filter. The slots are clusters of our
own, added whole: the upstream ext_proc filter sits on clusters the mesh neither generates
nor rewrites, over the provider clusters the mesh does generate (with their TLS).

The names are those of the examples in deploy/ (namespace `llm`, the gateway, the HTTPRoute
`claude`, the EnvoyExtensionPolicy `extproc`, the Service `extproc`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from extproc.config import Config
from extproc.control.envoy_config import (
    EXTPROC_FILTER,
    chain_routes,
    failover_clusters,
    filter_enabled,
)
from extproc.providers.upstream import origins

NAMESPACE = "llm"
FAILOVER_RESOURCE = "extproc-failover"
SIDECAR_SERVICE = "extproc"

ISTIO_GATEWAY_LABELS = {"istio": "llm-gateway"}
ISTIO_PORT = 8080
"""The dedicated gateway's Claude Code port (deploy/istio/gateway.yaml)."""

EG_GATEWAY, EG_LISTENER, EG_ROUTE, EG_POLICY = "llm", "claude", "claude", "extproc"
EG_FILTER = f"{EXTPROC_FILTER}/envoyextensionpolicy/{NAMESPACE}/{EG_POLICY}/extproc/0"
"""Envoy Gateway's name for the EnvoyExtensionPolicy's ext_proc filter."""
EG_EXTPROC_CLUSTER = f"envoyextensionpolicy/{NAMESPACE}/{EG_POLICY}/0/grpc-backend/0"
"""Envoy Gateway's cluster for the policy's backend (the sidecar)."""
EG_ROUTE_CONFIG = f"{NAMESPACE}/{EG_GATEWAY}/{EG_LISTENER}"
"""Envoy Gateway's RouteConfiguration of a Gateway listener: <namespace>/<gateway>/<listener>."""
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


def istio_cluster(host: str, port: int) -> str:
    """Istio's outbound cluster of a host and port (a Service's, or a ServiceEntry's)."""
    return f"outbound|{port}||{host}"


def eg_rule_cluster(index: int) -> str:
    """Envoy Gateway's cluster of the HTTPRoute's rule `index`."""
    return f"httproute/{NAMESPACE}/{EG_ROUTE}/rule/{index}"


def mesh_slot_clusters(
    config: Config, sidecar_cluster: str, origin_clusters: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The fail-fast cluster and the chains' slots, each aggregate over the mesh's cluster
    of its provider origin (`origin_clusters`: the renderer's name → the mesh's)."""
    out = []
    for cluster in failover_clusters(config, sidecar_cluster):
        cluster_type = cluster.get("cluster_type")
        if cluster_type:
            members = cluster_type["typed_config"]["clusters"]
            typed = {
                **cluster_type["typed_config"],
                "clusters": [origin_clusters.get(name, name) for name in members],
            }
            cluster = {**cluster, "cluster_type": {**cluster_type, "typed_config": typed}}
        out.append(cluster)
    return out


def istio_failover(config: Config) -> dict[str, Any]:
    """An EnvoyFilter for the dedicated gateway: each chain route first in the Claude Code
    port's virtual host (INSERT_FIRST, so given last to first), and the slot clusters."""
    sidecar = istio_cluster(f"{SIDECAR_SERVICE}.{NAMESPACE}.svc.cluster.local", config.sidecar.port)
    named = {name: istio_cluster(o.host, o.port) for name, o in origins(config).items()}
    on_port = {"context": "GATEWAY", "routeConfiguration": {"portNumber": ISTIO_PORT}}
    patches = [
        {
            "applyTo": "HTTP_ROUTE",
            "match": on_port,
            "patch": {"operation": "INSERT_FIRST", "value": route},
        }
        for route in reversed(chain_routes(config))
    ]
    patches += [
        {
            "applyTo": "CLUSTER",
            "match": {"context": "GATEWAY"},
            "patch": {"operation": "ADD", "value": cluster},
        }
        for cluster in mesh_slot_clusters(config, sidecar, named)
    ]
    return {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {"name": FAILOVER_RESOURCE, "namespace": NAMESPACE},
        "spec": {"workloadSelector": {"labels": ISTIO_GATEWAY_LABELS}, "configPatches": patches},
    }


def envoy_gateway_failover(config: Config) -> dict[str, Any]:
    """An EnvoyPatchPolicy for the Gateway: each chain route, with the policy's ext_proc
    filter on, at the head of the listener's virtual host in order, and the slot clusters
    added whole (JSON Patch `add` with an empty path), over the HTTPRoute rules' clusters
    (rule i serves origin i, as deploy/envoy-gateway/httproute.yaml lists them)."""
    named = {name: eg_rule_cluster(i) for i, name in enumerate(origins(config))}
    patches = [
        {
            "type": ROUTE_TYPE,
            "name": EG_ROUTE_CONFIG,
            "operation": {
                "op": "add",
                "path": f"/virtual_hosts/0/routes/{i}",
                "value": filter_enabled(route, EG_FILTER),
            },
        }
        for i, route in enumerate(chain_routes(config))
    ]
    patches += [
        {
            "type": CLUSTER_TYPE,
            "name": cluster["name"],
            "operation": {"op": "add", "path": "", "value": cluster},
        }
        for cluster in mesh_slot_clusters(config, EG_EXTPROC_CLUSTER, named)
    ]
    return {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyPatchPolicy",
        "metadata": {"name": FAILOVER_RESOURCE, "namespace": NAMESPACE},
        "spec": {
            "targetRef": {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": EG_GATEWAY,
            },
            "type": "JSONPatch",
            "jsonPatches": patches,
        },
    }


ISTIO_HEADER = """\
# Failover on the dedicated gateway (docs/mesh.md, "Failover in a mesh"): the chain routes
# and slot clusters of `extproc render-envoy --fragment`, as raw xDS. Rendered by
#   extproc render-envoy deploy/kubernetes/cpu/config.yaml --mesh-failover istio
# with the Secret's EXTPROC_SIDECAR_SECRET set; the test suite checks that it is what the
# renderer makes and that Envoy accepts it applied to a gateway listener.
# HTTP_ROUTE: one route per chain (x-extproc-chain, set by the sidecar), first in the
#   Claude Code port's virtual host: attempt N goes to the chain's slot N (priority-group
#   cluster specifier), retried on 429, 529, 5xx, resets and refused connections.
# CLUSTER: extproc_failfast and the slots, aggregate clusters over Istio's cluster of each
#   provider (outbound|443||host, with the DestinationRule's TLS); a fo__ slot carries the
#   sidecar as an upstream ext_proc filter, with the sidecar's secret: whoever may read
#   EnvoyFilters in this namespace can read it.
# The gateway's Envoy must have the priority-group cluster specifier (Envoy 1.40).
"""

ENVOY_GATEWAY_HEADER = """\
# Failover on the llm Gateway (docs/mesh.md, "Failover in a mesh"): the chain routes and
# slot clusters of `extproc render-envoy --fragment`, as JSON patches on the xDS Envoy
# Gateway generates. Rendered by
#   extproc render-envoy deploy/kubernetes/cpu/config.yaml --mesh-failover envoy-gateway
# without EXTPROC_SIDECAR_SECRET (Envoy Gateway's ext_proc filter can't present it); the
# test suite checks that it is what the renderer makes, that Envoy accepts it applied to
# the generated shape, and routes a failed-over request through that shape.
# EnvoyPatchPolicy is off unless enabled (helm-values.yaml: enableEnvoyPatchPolicy).
# RouteConfiguration llm/llm/claude: one route per chain (x-extproc-chain, set by the
#   sidecar) at the head of the listener's virtual host, the policy's ext_proc filter on.
# Cluster: extproc_failfast and the slots, aggregate clusters over the HTTPRoute rules'
#   clusters (httproute/llm/claude/rule/<i>: rule i is origin i); a fo__ slot carries the
#   sidecar as an upstream ext_proc filter (envoyextensionpolicy/llm/extproc/0/grpc-backend/0).
# Envoy Gateway unmarshals each value with the Envoy types compiled into it: it needs a
# release that knows the priority-group cluster specifier, and an Envoy 1.40 data plane.
"""

MESHES = {
    "istio": (ISTIO_HEADER, istio_failover),
    "envoy-gateway": (ENVOY_GATEWAY_HEADER, envoy_gateway_failover),
}


class _Manifest(yaml.SafeDumper):
    """Writes a value met twice (the match every route patch shares) out each time: a
    manifest without YAML anchors reads the same in every tool."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def mesh_failover(config: Config, mesh: str) -> str:
    """The failover resource for `mesh` (a key of MESHES), as the file deploy/ holds."""
    header, build = MESHES[mesh]
    return header + yaml.dump(build(config), Dumper=_Manifest, sort_keys=False, width=120)
