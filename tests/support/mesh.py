"""What a mesh's controller does with the failover resources of deploy/, for tests that build
the Envoy config it would send: Istio applies the EnvoyFilter's route and cluster patches,
Envoy Gateway its EnvoyPatchPolicy's JSON patches (the two forms of `add` the policy uses)."""

from __future__ import annotations

import copy
from typing import Any

from extproc.control.mesh_failover import CLUSTER_TYPE, ROUTE_TYPE

Resource = dict[str, Any]


def apply_istio_failover(
    envoy_filter: Resource, virtual_host: Resource, clusters: list[Resource]
) -> None:
    """Each HTTP_ROUTE patch put first in `virtual_host` (INSERT_FIRST without a route match,
    in the order given), each CLUSTER patch added to `clusters`."""
    for patch in envoy_filter["spec"]["configPatches"]:
        operation, value = patch["patch"]["operation"], copy.deepcopy(patch["patch"]["value"])
        if patch["applyTo"] == "HTTP_ROUTE":
            assert operation == "INSERT_FIRST"
            virtual_host["routes"].insert(0, value)
        else:
            assert (patch["applyTo"], operation) == ("CLUSTER", "ADD")
            clusters.append(value)


def apply_envoy_patch_policy(
    policy: Resource, route_config: Resource, clusters: list[Resource]
) -> None:
    """Each JSON patch of `policy`: `add` at a path of the RouteConfiguration (RFC 6902: into
    a list, before the index), or `add` with an empty path, a new Cluster."""
    for patch in policy["spec"]["jsonPatches"]:
        operation = patch["operation"]
        assert operation["op"] == "add"
        value = copy.deepcopy(operation["value"])
        if patch["type"] == CLUSTER_TYPE:
            assert operation["path"] == ""
            clusters.append(value)
            continue
        assert patch["type"] == ROUTE_TYPE
        *parents, last = operation["path"].removeprefix("/").split("/")
        target: Any = route_config
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target.insert(int(last), value)
