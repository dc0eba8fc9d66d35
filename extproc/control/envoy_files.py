"""Envoy's clusters, routes and listener as files it watches (CDS, RDS and LDS): how
`extproc up` hands a config edit to the running Envoy, without a restart and without cutting
a stream.

Envoy reads `clusters.yaml`, `routes.yaml` and `listeners.yaml` again whenever a file is
renamed into their folder, so each is written beside and renamed over the old one. Changed
routes are swapped in place: requests already routed keep the routes they started with, and
open connections stay open. A changed listener is a new one, the old one draining its
connections for `--drain-time-s`; the routes live outside it, so an edit to the failover
chains (a `fallbacks:` added, a provider renamed) does not touch it. Each delivery waits for
Envoy's answer in its admin stats: the file's version applied, or rejected (then the last
good files are written back, or every later write would be rejected again).

A cluster is never taken from under a request. Envoy resets the ext_proc streams of a
modified or removed cluster, so a changed sidecar cluster comes under a new name
(`versioned_sidecar_cluster`); a cluster the new config no longer needs is retired, and
removed only once nothing can use it (`prune`). Nor is a failover chain's route: Envoy takes
an edit before the sidecar reloads, and until then the sidecar still sends requests on the
old config's chains. A chain route the edit removes stays in force beside the new ones
until the sidecar has the edit (only while the new config has chains: its listener removes
a client's own chain header, so no client can pick such a route).
"""

from __future__ import annotations

import os
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from extproc.config import Config
from extproc.control.connections import fit_to_open_files
from extproc.control.envoy_check import envoy_refusal
from extproc.control.envoy_config import (
    ROUTE_CONFIG,
    clusters,
    listener,
    process_settings,
    route_configuration,
    versioned_sidecar_cluster,
)
from extproc.providers.chains import CHAIN_HEADER, chains

CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTES_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
ACK_TIMEOUT_S = 10.0
PRUNE_EVERY_S = 1.0
Resource = dict[str, Any]
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
"""libyaml's when PyYAML has it: every edit writes the whole listener, and the pure-Python
dumper takes a tenth of a second for it."""


class DeliveryError(Exception):
    """Envoy did not take a delivery; the last good files are in force again."""


@dataclass
class Retired:
    """A cluster the config no longer names, kept while something may still use it."""

    resource: Resource
    since: float
    sidecar: bool
    """The sidecar's own cluster: older listeners' connections may open streams on it until
    their drain time is over. A provider's is used only by a sidecar on an older config."""


@dataclass(frozen=True)
class _Subscription:
    """One watched file and the admin stats that tell what Envoy did with it."""

    file: str
    kind: str
    stat: str

    def document(self, resources: list[Resource], version: int) -> str:
        typed = [{"@type": self.kind, **resource} for resource in resources]
        document = {"version_info": str(version), "resources": typed}
        return yaml.dump(document, Dumper=_DUMPER, sort_keys=False)


CDS = _Subscription("clusters.yaml", CLUSTER_TYPE, "cluster_manager.cds")
RDS = _Subscription("routes.yaml", ROUTES_TYPE, f"http.llm.rds.{ROUTE_CONFIG}")
"""Its stats are the connection manager's (stat_prefix `llm`), under the routes' name."""
LDS = _Subscription("listeners.yaml", LISTENER_TYPE, "listener_manager.lds")
Change = tuple[_Subscription, list[Resource], list[Resource]]
"""A file's resources to put in force, and those in force now."""


class EnvoyFiles:
    """The files of one Envoy in `folder`, and what that Envoy has in force. Its connection
    limit is what `open_files` descriptors can hold (extproc.control.connections)."""

    def __init__(self, folder: Path, admin_port: int, drain_s: float, open_files: int):
        self.folder = folder
        self.admin = f"http://127.0.0.1:{admin_port}"
        self.drain_s = drain_s
        self.open_files = open_files
        self.version = 0
        self.clusters: dict[str, Resource] = {}
        self.routes: Resource = {}
        """The routes in force: the config's, and the retired chain routes before them."""
        self.config_routes: Resource = {}
        """The config's own routes, in force alone once no chain route is retired."""
        self.listener: Resource = {}
        self.sidecar_cluster = ""
        self.retired: dict[str, Retired] = {}
        self.next_prune = 0.0

    def bootstrap(self, config: Config) -> Path:
        """Write the first clusters, routes and listener, and the bootstrap that points at
        the clusters and the listener (the listener points at the routes)."""
        config = self._fit(config)
        self.sidecar_cluster, self.clusters, self.routes, self.listener = self._wanted(config)
        self.config_routes = self.routes
        self._write(CDS, list(self.clusters.values()))
        self._write(RDS, [self.routes])
        self._write(LDS, [self.listener])
        document = {
            "node": {"id": "extproc", "cluster": "extproc"},
            **process_settings(config),
            "dynamic_resources": {"cds_config": self._source(CDS), "lds_config": self._source(LDS)},
        }
        path = self.folder / "bootstrap.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return path

    def needs_new_process(self, old: Config, new: Config) -> bool:
        """Whether `new` changes what only a new Envoy process takes (admin, overload)."""
        return process_settings(self._fit(old)) != process_settings(self._fit(new))

    def refusal(self, config: Config) -> str | None:
        """Why Envoy would refuse `config` (`envoy --mode validate`), or None."""
        return envoy_refusal(self._fit(config))

    def deliver(self, config: Config) -> bool:
        """Put `config`'s clusters, then its routes and listener in force (`_routes_and_listener`
        says in which order); returns whether Envoy's config changed. Raises DeliveryError when
        Envoy refuses (nothing changed then)."""
        config = self._fit(config)
        sidecar_cluster, wanted, new_routes, new_listener = self._wanted(config)
        now = time.monotonic()
        retired = {name: r for name, r in self.retired.items() if name not in wanted}
        for name, resource in self.clusters.items():
            if name not in wanted and name not in retired:
                retired[name] = Retired(resource, now, sidecar=name == self.sidecar_cluster)
        merged = {**wanted, **{name: r.resource for name, r in retired.items()}}
        routes = _with_retired_chains(new_routes, self.routes) if chains(config) else new_routes
        changes: list[Change] = [
            (CDS, list(merged.values()), list(self.clusters.values())),
            *_routes_and_listener(
                config, (RDS, [routes], [self.routes]), (LDS, [new_listener], [self.listener])
            ),
        ]
        changed = self._apply_in_order([c for c in changes if c[1] != c[2]])
        self.clusters, self.routes, self.listener = merged, routes, new_listener
        self.config_routes = new_routes
        self.retired, self.sidecar_cluster = retired, sidecar_cluster
        return changed

    def prune(self, sidecar_in_step: bool) -> None:
        """Remove the retired chain routes once the sidecar has the edit, then the retired
        clusters nothing uses any more (looked at about once a second; after a failed
        removal, only once the drain time has passed)."""
        now = time.monotonic()
        routes_retired = self.routes != self.config_routes
        if not (self.retired or routes_retired) or now < self.next_prune:
            return
        self.next_prune = now + self.drain_s
        if routes_retired and sidecar_in_step:
            self._apply(RDS, [self.config_routes], [self.routes])
            self.routes = self.config_routes
        active = self._stats(r"upstream_rq_active$")
        idle = {
            name
            for name, r in self.retired.items()
            if active.get(f"cluster.{name}.upstream_rq_active") == "0"
            and (now - r.since >= self.drain_s if r.sidecar else sidecar_in_step)
        }
        if idle:
            kept = {name: c for name, c in self.clusters.items() if name not in idle}
            self._apply(CDS, list(kept.values()), list(self.clusters.values()))
            self.clusters = kept
            self.retired = {name: r for name, r in self.retired.items() if name not in idle}
        self.next_prune = now + PRUNE_EVERY_S

    def _fit(self, config: Config) -> Config:
        return fit_to_open_files(config, self.open_files)

    def _source(self, sub: _Subscription) -> Resource:
        """Where Envoy reads `sub`'s resources: its file, watched for renames into the folder."""
        watched = {"watched_directory": {"path": str(self.folder)}}
        return {
            "path_config_source": {"path": str(self.folder / sub.file), **watched},
            "resource_api_version": "V3",
        }

    def _wanted(self, config: Config) -> tuple[str, dict[str, Resource], Resource, Resource]:
        """The sidecar cluster's name, the clusters by name, the routes and the listener."""
        sidecar = versioned_sidecar_cluster(config)
        wanted = {c["name"]: c for c in clusters(config, sidecar)}
        return (
            sidecar,
            wanted,
            route_configuration(config),
            listener(config, sidecar, routes_from=self._source(RDS)),
        )

    def _apply_in_order(self, changes: list[Change]) -> bool:
        """Apply each change; when Envoy refuses one, take back those applied before it,
        last first (nothing uses them yet: the sidecar has not seen this config)."""
        for position, (sub, resources, in_force) in enumerate(changes):
            try:
                self._apply(sub, resources, in_force)
            except DeliveryError:
                for earlier, applied, before in reversed(changes[:position]):
                    self._apply(earlier, before, applied)
                raise
        return bool(changes)

    def _apply(
        self, sub: _Subscription, resources: list[Resource], in_force: list[Resource]
    ) -> None:
        """Write `resources` and wait for Envoy's answer. When it refuses them, `in_force`
        goes back in the file: Envoy reads it again on every later write to the folder."""
        try:
            self._write_and_wait(sub, resources)
        except DeliveryError:
            self._write(sub, in_force)
            raise

    def _write_and_wait(self, sub: _Subscription, resources: list[Resource]) -> None:
        counter, version_text = f"{sub.stat}.update_rejected", f"{sub.stat}.version_text"
        deadline = time.monotonic() + ACK_TIMEOUT_S
        rejected = self._stats(rf"^{sub.stat}\.update_rejected$").get(counter)
        while rejected is None:
            if time.monotonic() > deadline:
                raise DeliveryError(f"Envoy's admin ({self.admin}) does not answer")
            time.sleep(0.05)
            rejected = self._stats(rf"^{sub.stat}\.update_rejected$").get(counter)
        version = self._write(sub, resources)
        while time.monotonic() < deadline:
            stats = self._stats(rf"^{sub.stat}\.(version_text|update_rejected)$")
            if stats.get(version_text) == f'"{version}"':
                return
            if stats.get(counter, rejected) != rejected:
                raise DeliveryError(f"Envoy rejected the new {sub.file} (its log above says why)")
            time.sleep(0.05)
        raise DeliveryError(f"Envoy did not apply the new {sub.file} in {ACK_TIMEOUT_S:.0f}s")

    def _write(self, sub: _Subscription, resources: list[Resource]) -> int:
        self.version += 1
        temporary = self.folder / f".{sub.file}.new"
        temporary.write_text(sub.document(resources, self.version), encoding="utf-8")
        os.replace(temporary, self.folder / sub.file)
        return self.version

    def _stats(self, pattern: str) -> dict[str, str]:
        url = f"{self.admin}/stats?filter={urllib.request.quote(pattern)}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return {}
        return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def _with_retired_chains(new: Resource, in_force: Resource) -> Resource:
    """`new`, with the chain routes in force that it no longer has put before its own: each
    matches its own chain header value, which no route of `new` matches."""
    kept = {_chain_of(route) for route in _routes_of(new)}
    retired = [r for r in _routes_of(in_force) if _chain_of(r) not in (None, *kept)]
    if not retired:
        return new
    [host] = new["virtual_hosts"]
    return {**new, "virtual_hosts": [{**host, "routes": [*retired, *host["routes"]]}]}


def _routes_of(routes: Resource) -> list[Resource]:
    return [r for host in routes["virtual_hosts"] for r in host["routes"]]


def _chain_of(route: Resource) -> str | None:
    """The chain header value a route matches, or None for a route of no chain."""
    for header in route["match"].get("headers", ()):
        if header["name"] == CHAIN_HEADER:
            return header["string_match"]["exact"]
    return None


def _routes_and_listener(config: Config, to_routes: Change, to_listener: Change) -> list[Change]:
    """The routes and the listener, in the order that never has chain routes in force on a
    listener that lets a client's own chain header through (it removes the header only when
    the config has chains): with chains the listener comes first, without them the routes.
    Both come after the clusters, which the routes name."""
    return [to_listener, to_routes] if chains(config) else [to_routes, to_listener]
