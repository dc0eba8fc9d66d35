"""Render Envoy's bootstrap config from config.yaml.

One listener with the ext_proc filter, one cluster per provider origin, one
route on the cluster header the sidecar sets, and a JSON access log carrying
the sidecar's decision metadata.
"""

from __future__ import annotations

from typing import Any

import yaml

from extproc.config import Config
from extproc.replies import METADATA_NAMESPACE
from extproc.upstream import CLUSTER_HEADER, Origin, origins

EXTPROC_CLUSTER = "extproc"
DECISION_FIELDS = ("requested_model", "routed_model", "provider", "route", "source", "router_ms")

ACCESS_LOG_FORMAT: dict[str, str] = {
    "time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "status": "%RESPONSE_CODE%",
    "duration_ms": "%DURATION%",
    "upstream": "%UPSTREAM_CLUSTER%",
    "upstream_ms": "%RESPONSE_DURATION%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "flags": "%RESPONSE_FLAGS%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "session": "%REQ(X-CLAUDE-CODE-SESSION-ID)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    **{name: f"%DYNAMIC_METADATA({METADATA_NAMESPACE}:{name})%" for name in DECISION_FIELDS},
    "note": f"%DYNAMIC_METADATA({METADATA_NAMESPACE}:note)%",
}


def _ext(name: str) -> str:
    """The type URL of an Envoy extension's config message."""
    return f"type.googleapis.com/envoy.extensions.{name}"


HEADER = "# Rendered by `extproc render-envoy` from config.yaml; edit config.yaml, not this file.\n"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _extproc_filter(config: Config) -> dict[str, Any]:
    # A fresh classification on a CPU takes about a second; Envoy's default 200 ms
    # would cut every one of them. Leave room for parsing multi-MB bodies too.
    message_timeout = config.routing.timeout_ms / 1000 + 10
    return {
        "name": "envoy.filters.http.ext_proc",
        "typed_config": {
            "@type": _ext("filters.http.ext_proc.v3.ExternalProcessor"),
            "grpc_service": {
                "envoy_grpc": {
                    "cluster_name": EXTPROC_CLUSTER,
                    "max_receive_message_length": config.listener.max_body_bytes + 1024 * 1024,
                },
                "timeout": _seconds(message_timeout + 5),
            },
            "failure_mode_allow": False,
            "message_timeout": _seconds(message_timeout),
            "max_message_timeout": _seconds(message_timeout),
            "allow_mode_override": True,
            "processing_mode": {
                "request_header_mode": "SEND",
                "request_body_mode": "BUFFERED",
                "request_trailer_mode": "SKIP",
                "response_header_mode": "SEND",
                "response_body_mode": "NONE",
                "response_trailer_mode": "SKIP",
            },
            "metadata_options": {"receiving_namespaces": {"untyped": [METADATA_NAMESPACE]}},
            # Lets the sidecar record the client's path in x-envoy-original-path when it
            # rewrites :path, as Envoy's own rewrites do; the access log shows that path.
            "mutation_rules": {"allow_envoy": True},
        },
    }


def _listener(config: Config) -> dict[str, Any]:
    listener = config.listener
    return {
        "name": "llm",
        "address": {"socket_address": {"address": listener.address, "port_value": listener.port}},
        "per_connection_buffer_limit_bytes": listener.max_body_bytes,
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": _ext(
                                "filters.network.http_connection_manager.v3.HttpConnectionManager"
                            ),
                            "stat_prefix": "llm",
                            "codec_type": "AUTO",
                            # Streams may stay open for many minutes; only silence ends them.
                            "stream_idle_timeout": "600s",
                            "request_timeout": "0s",
                            "access_log": [
                                {
                                    "name": "envoy.access_loggers.stdout",
                                    "typed_config": {
                                        "@type": _ext("access_loggers.stream.v3.StdoutAccessLog"),
                                        "log_format": {"json_format": ACCESS_LOG_FORMAT},
                                    },
                                }
                            ],
                            "route_config": {
                                "name": "llm",
                                "virtual_hosts": [
                                    {"name": "llm", "domains": ["*"], "routes": [_route()]}
                                ],
                            },
                            "http_filters": [
                                _extproc_filter(config),
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {
                                        "@type": _ext("filters.http.router.v3.Router")
                                    },
                                },
                            ],
                        },
                    }
                ]
            }
        ],
    }


def _route() -> dict[str, Any]:
    """Everything goes to the cluster the sidecar names; streams may run for many minutes."""
    return {
        "match": {"prefix": "/"},
        "route": {
            "cluster_header": CLUSTER_HEADER,
            "auto_host_rewrite": True,
            "timeout": "0s",
            "idle_timeout": "600s",
        },
    }


def _one_endpoint(cluster: str, host: str, port: int) -> dict[str, Any]:
    address = {"socket_address": {"address": host, "port_value": port}}
    return {
        "cluster_name": cluster,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
    }


def _provider_cluster(origin: Origin, max_body: int) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": origin.cluster,
        "type": "LOGICAL_DNS",
        "connect_timeout": "10s",
        # Try IPv4 first: a `localhost` upstream bound to 127.0.0.1 otherwise fails on ::1.
        "dns_lookup_family": "V4_PREFERRED",
        "per_connection_buffer_limit_bytes": max_body,
        "load_assignment": _one_endpoint(origin.cluster, origin.host, origin.port),
    }
    if origin.tls:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": _ext("transport_sockets.tls.v3.UpstreamTlsContext"),
                "sni": origin.host,
            },
        }
    return cluster


def _extproc_cluster(config: Config) -> dict[str, Any]:
    sidecar = config.sidecar
    return {
        "name": EXTPROC_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "per_connection_buffer_limit_bytes": config.listener.max_body_bytes,
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _ext("upstreams.http.v3.HttpProtocolOptions"),
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": _one_endpoint(EXTPROC_CLUSTER, sidecar.address, sidecar.port),
    }


def bootstrap(config: Config) -> dict[str, Any]:
    return {
        "admin": {
            "address": {
                "socket_address": {"address": "127.0.0.1", "port_value": config.listener.admin_port}
            }
        },
        "static_resources": {
            "listeners": [_listener(config)],
            "clusters": _clusters(config),
        },
    }


def _clusters(config: Config) -> list[dict[str, Any]]:
    max_body = config.listener.max_body_bytes
    return [
        _extproc_cluster(config),
        *(_provider_cluster(o, max_body) for o in origins(config).values()),
    ]


def render(config: Config) -> str:
    return HEADER + yaml.safe_dump(bootstrap(config), sort_keys=False, width=120)


FRAGMENT_HEADER = """\
# extproc pieces for an Envoy you already run (docs/mesh.md), rendered from config.yaml.
# http_filters: put the ext_proc filter before envoy.filters.http.router.
# routes: add to the virtual host that serves your Claude Code traffic.
# clusters: add to static_resources.clusters (or your CDS).
# access_log_format: fields to add to your JSON access log to see each decision.
# The listener (or its HttpConnectionManager) needs per_connection_buffer_limit_bytes
# of at least {max_body} for Claude Code's bodies.
"""


def fragment(config: Config) -> str:
    """Just the filter, route and clusters, to merge into an existing Envoy config."""
    pieces = {
        "http_filters": [_extproc_filter(config)],
        "routes": [_route()],
        "clusters": _clusters(config),
        "access_log_format": ACCESS_LOG_FORMAT,
    }
    header = FRAGMENT_HEADER.format(max_body=config.listener.max_body_bytes)
    return header + yaml.safe_dump(pieces, sort_keys=False, width=120)
