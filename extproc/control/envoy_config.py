"""Render Envoy's bootstrap config from config.yaml.

One listener with the ext_proc filter, one cluster per provider origin, one
route on the cluster header the sidecar sets, and a JSON access log carrying
the sidecar's decision metadata.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from extproc.config import Config, Provider, is_ip
from extproc.providers.chains import (
    CHAIN_HEADER,
    FAILOVER_HEADER,
    FAILOVER_PREFIX,
    HEAD_ANSWER_HEADER,
    HEAD_BODY_METADATA,
    STREAMED,
    chains,
    failover_slot,
    head_slot,
    keeps_client_auth,
    slots,
)
from extproc.providers.upstream import CLUSTER_HEADER, Origin, cluster_name, origins
from extproc.proxy.attempt import CONTEXT_TOO_LONG, RETRY_AFTER, failure_key
from extproc.proxy.exchange import (
    GATEWAY_KEY_HEADERS,
    LOCAL_REPLY_HEADER,
    READ_HEADERS,
    UPSTREAM_READ_HEADERS,
)
from extproc.proxy.server import SECRET_METADATA

EXTPROC_CLUSTER = "extproc"
EXTPROC_FILTER = "envoy.filters.http.ext_proc"
DECISION_FIELDS = ("requested_model", "routed_model", "provider", "route", "source", "router_ms")
# Known when the sidecar translated the answer (it reads the provider's usage), or counted
# it; `cost_usd` where the routed model has a price too. `switched_from`: the model this
# Claude Code session used before, on its first request routed to another.
USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cost_usd",
)
METADATA_FIELDS = (*DECISION_FIELDS, "note", "switched_from", *USAGE_FIELDS)

CLIENT_REQUEST_ID = "x-client-request-id"
"""Where a client's own x-request-id goes: Envoy's replaces it (`_drop_client_headers`)."""

ENVOY_LOG_FORMAT: dict[str, str] = {
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
    "client_request_id": f"%REQ({CLIENT_REQUEST_ID.upper()})%",
}


def access_log_format(config: Config) -> dict[str, str]:
    """The JSON access-log fields: Envoy's own, and the sidecar's decision metadata; with
    failover, how many attempts the request took."""
    namespace = config.sidecar.metadata_namespace
    decision = {name: f"%DYNAMIC_METADATA({namespace}:{name})%" for name in METADATA_FIELDS}
    attempts = {"attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%"} if chains(config) else {}
    return {**ENVOY_LOG_FORMAT, **attempts, **decision}


ATTEMPT_LOG_FORMAT: dict[str, str] = {
    "time": "%START_TIME%",
    "log": "attempt",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "candidate": "%UPSTREAM_CLUSTER%",
    "status": "%RESPONSE_CODE%",
    "flags": "%RESPONSE_FLAGS%",
    "duration_ms": "%DURATION%",
    "failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    "retry_after": "%RESP(RETRY-AFTER)%",
    "failover": f"%RESP({FAILOVER_HEADER.upper()})%",
}
"""One line per failed attempt (Router.upstream_log): the candidate is its chain slot."""


USAGE_LUA = Path(__file__).with_name("usage.lua").read_text(encoding="utf-8")
"""The Lua filter that reads token counts from answers the sidecar does not read."""


CHAIN_HEAD_LUA = Path(__file__).with_name("chain_head.lua").read_text(encoding="utf-8")
"""The Lua filter of a chain head's attempt: a translated head's body put in place, the
answer's failure written down for the next attempt."""


def chain_head_filter(config: Config, slot: str) -> dict[str, Any]:
    """The upstream filter of a `p__` slot (a chain's head, rewritten downstream, whose answer
    goes past the failover handler): a translated head's body put in place; a failure, or a
    400 saying the prompt is over the window (which also gets the failover mark), written to
    the metadata under the slot's failure key, as a `fo__` attempt's would be."""
    markers = ", ".join(f'"{lua_escaped(marker.decode())}"' for marker in CONTEXT_TOO_LONG)
    source = (
        CHAIN_HEAD_LUA.replace("%NAMESPACE%", config.sidecar.metadata_namespace)
        .replace("%FAILED_KEY%", failure_key(slot))
        .replace("%RETRY_AFTER_KEY%", RETRY_AFTER)
        .replace("%BODY_KEY%", HEAD_BODY_METADATA)
        .replace("%MARKERS%", markers)
        .replace("%FAILOVER_HEADER%", FAILOVER_HEADER)
        .replace("%HEAD_ANSWER_HEADER%", HEAD_ANSWER_HEADER)
    )
    return _lua_filter(source)


REPORT_CLUSTER = "extproc-health"
"""The sidecar's health port, where usage.lua reports a Claude Code session's answers."""


def usage_filter(config: Config) -> dict[str, Any]:
    """Envoy's Lua filter with usage.lua: token counts and cost of Anthropic-format answers,
    read in Envoy as they pass (the sidecar asks for it in its decision metadata), and
    reported to the session's record on the sidecar's health port."""
    source = (
        USAGE_LUA.replace("%NAMESPACE%", config.sidecar.metadata_namespace)
        .replace("%REPORT_CLUSTER%", REPORT_CLUSTER)
        .replace("%SECRET%", lua_escaped(config.sidecar_secret))
    )
    return _lua_filter(source)


def _lua_filter(source: str) -> dict[str, Any]:
    """Envoy's Lua filter running `source`."""
    return {
        "name": "envoy.filters.http.lua",
        "typed_config": {
            "@type": _ext("filters.http.lua.v3.Lua"),
            "default_source_code": {"inline_string": source},
        },
    }


def lua_escaped(text: str) -> str:
    """`text` for a Lua string literal: every character as a decimal escape (a secret may
    hold quotes or backslashes)."""
    return "".join(f"\\{byte:03d}" for byte in text.encode())


def _ext(name: str) -> str:
    """The type URL of an Envoy extension's config message."""
    return f"type.googleapis.com/envoy.extensions.{name}"


HEADER = "# Rendered by `extproc render-envoy` from config.yaml; edit config.yaml, not this file.\n"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _forwarded_headers(config: Config) -> tuple[str, ...]:
    # Gateway keys are checked by the sidecar; a client's own credentials are kept by it for
    # a later candidate that takes them (providers/chains.py).
    keys = GATEWAY_KEY_HEADERS if config.gateway_keys or keeps_client_auth(config) else ()
    # With failover, the mark of a translated head's answer, which the sidecar translates.
    marks = (HEAD_ANSWER_HEADER,) if chains(config) else ()
    return READ_HEADERS + keys + marks + config.rule_headers


def _secret_metadata(config: Config) -> dict[str, Any]:
    """The sidecar's secret, sent by Envoy at the start of every ext_proc stream."""
    if not config.sidecar_secret:
        return {}
    return {"initial_metadata": [{"key": SECRET_METADATA, "value": config.sidecar_secret}]}


def _extproc_filter(config: Config, sidecar_cluster: str) -> dict[str, Any]:
    # A fresh classification on a CPU takes about a second; Envoy's default 200 ms
    # would cut every one of them. Leave room for parsing multi-MB bodies too.
    message_timeout = config.routing.timeout_ms / 1000 + 10
    return {
        "name": EXTPROC_FILTER,
        "typed_config": {
            "@type": _ext("filters.http.ext_proc.v3.ExternalProcessor"),
            "grpc_service": {
                "envoy_grpc": {
                    "cluster_name": sidecar_cluster,
                    "max_receive_message_length": config.listener.max_body_bytes + 1024 * 1024,
                },
                "timeout": _seconds(message_timeout + 5),
                **_secret_metadata(config),
            },
            "failure_mode_allow": config.sidecar.failure_mode_allow,
            # 503, not Envoy's default 500: a sidecar that can't be reached is a temporary
            # condition (SDKs retry it), and the local reply mapper names it.
            "status_on_error": {"code": 503},
            "message_timeout": _seconds(message_timeout),
            "max_message_timeout": _seconds(message_timeout),
            "allow_mode_override": True,
            "processing_mode": {
                "request_header_mode": "SEND",
                "request_body_mode": "BUFFERED",
                "request_trailer_mode": "SKIP",
                # Asked for per request (mode_override) when the sidecar reads the answer:
                # a reply to a request it never saw (malformed HTTP) must not wait on it.
                "response_header_mode": "SKIP",
                "response_body_mode": "NONE",
                "response_trailer_mode": "SKIP",
            },
            "metadata_options": {
                "receiving_namespaces": {"untyped": [config.sidecar.metadata_namespace]}
            },
            # Only what the sidecar reads: less to serialize and parse on every request.
            "forward_rules": {
                "allowed_headers": {
                    "patterns": [{"exact": name} for name in _forwarded_headers(config)]
                }
            },
            # Lets the sidecar record the client's path in x-envoy-original-path when it
            # rewrites :path, as Envoy's own rewrites do; the access log shows that path.
            "mutation_rules": {"allow_envoy": True},
        },
    }


CONNECTION_BUFFER_BYTES = 1024 * 1024
"""What Envoy holds per client or provider connection (its own default): a client that stops
reading pins this much, not a whole body. Request bodies get `max_body_bytes` from the route."""


def listener(
    config: Config,
    sidecar_cluster: str = EXTPROC_CLUSTER,
    routes_from: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The one listener: ext_proc (talking to `sidecar_cluster`), then the router. Its routes
    are inline, or with `routes_from` (a config source) Envoy's RDS resource `ROUTE_CONFIG`."""
    listener = config.listener
    return {
        "name": "llm",
        "address": {"socket_address": {"address": listener.address, "port_value": listener.port}},
        # Envoy raises a stream's limit to the route's request_body_buffer_limit, never
        # lowers it: a max_body_bytes under this must be the listener's own limit.
        "per_connection_buffer_limit_bytes": min(listener.max_body_bytes, CONNECTION_BUFFER_BYTES),
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
                            "stream_idle_timeout": _seconds(listener.idle_timeout_s),
                            "request_timeout": "0s",
                            # A slow client's headers can't hold its connection for long.
                            "request_headers_timeout": _seconds(listener.request_headers_timeout_s),
                            # One spelling per path (`//v1/./messages` is `/v1/messages`):
                            # the sidecar routes or allows paths by their exact text.
                            "normalize_path": True,
                            "merge_slashes": True,
                            "early_header_mutation_extensions": [_drop_client_headers(config)],
                            "local_reply_config": local_replies(config),
                            "access_log": [
                                {
                                    "name": "envoy.access_loggers.stdout",
                                    "typed_config": {
                                        "@type": _ext("access_loggers.stream.v3.StdoutAccessLog"),
                                        "log_format": {"json_format": access_log_format(config)},
                                    },
                                }
                            ],
                            **_routes_in_listener(config, routes_from),
                            "http_filters": [
                                _extproc_filter(config, sidecar_cluster),
                                usage_filter(config),
                                _router(config),
                            ],
                        },
                    }
                ]
            }
        ],
    }


ROUTE_CONFIG = "llm"
"""The name of the listener's route configuration (its RDS resource under `extproc up`)."""


def route_configuration(config: Config) -> dict[str, Any]:
    """Every route, in the one virtual host."""
    virtual_host = {"name": "llm", "domains": ["*"], "routes": routes(config)}
    return {"name": ROUTE_CONFIG, "virtual_hosts": [virtual_host]}


def _routes_in_listener(config: Config, routes_from: dict[str, Any] | None) -> dict[str, Any]:
    """The connection manager's routes: inline (one file, `render-envoy`), or the name of the
    route configuration Envoy reads from `routes_from` (RDS): a config edit that changes only
    the routes then leaves the listener and its connections as they are."""
    if routes_from is None:
        return {"route_config": route_configuration(config)}
    return {"rds": {"route_config_name": ROUTE_CONFIG, "config_source": routes_from}}


DECISION_HEADERS = {
    "x-extproc-model": "routed_model",
    "x-extproc-route": "route",
    "x-extproc-source": "source",
}
"""The decision on every answer: header name → the decision metadata field it carries. Envoy
adds them from the metadata (no sidecar call); one with no value (no route when the default
decided, nothing on a pass-through path) is left out."""
GATEWAY_RESPONSE_HEADERS = (LOCAL_REPLY_HEADER, CLUSTER_HEADER, *DECISION_HEADERS)
"""The gateway's own headers, removed from every provider's answer: a provider's
x-extproc-local-reply would pass as Envoy's error reply, which the sidecar does not
translate, and its x-extproc-model would pass as the decision. Envoy's own replies get
theirs after the route's removal (local_replies)."""


def decision_headers(config: Config) -> list[dict[str, Any]]:
    """The route's response_headers_to_add: the decision, from Envoy's dynamic metadata."""
    namespace = config.sidecar.metadata_namespace
    return [
        {
            "header": {"key": name, "value": f"%DYNAMIC_METADATA({namespace}:{field})%"},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }
        for name, field in DECISION_HEADERS.items()
    ]


def _route(config: Config) -> dict[str, Any]:
    """Everything goes to the cluster the sidecar names; streams may run for many minutes.
    Answers lose the gateway's own headers on the way back, and gain the decision's.

    The sidecar reads whole request bodies (up to `max_body_bytes`), so Envoy buffers them:
    this route alone raises the buffer limit for them, not every connection.
    """
    route: dict[str, Any] = {
        "match": {"prefix": "/"},
        "request_body_buffer_limit": config.listener.max_body_bytes,
        "response_headers_to_remove": list(GATEWAY_RESPONSE_HEADERS),
        "route": {
            "cluster_header": CLUSTER_HEADER,
            "auto_host_rewrite": True,
            "timeout": "0s",
            "idle_timeout": _seconds(config.listener.idle_timeout_s),
        },
    }
    return _with_decision_headers(config, route)


def _with_decision_headers(config: Config, route: dict[str, Any]) -> dict[str, Any]:
    """`route`, its answers carrying the decision (listener.decision_headers)."""
    if config.listener.decision_headers:
        route["response_headers_to_add"] = decision_headers(config)
    return route


def routes(config: Config) -> list[dict[str, Any]]:
    """The chain routes (none without failover), then the cluster-header route."""
    return [*chain_routes(config), _route(config)]


def _router(config: Config) -> dict[str, Any]:
    """The router; with failover, it logs each failed attempt (a failure flag, or a status
    of 400 and up) as one JSON line beside the access log."""
    router: dict[str, Any] = {"@type": _ext("filters.http.router.v3.Router")}
    if chains(config):
        failed = {"or_filter": {"filters": [_status_at_least(400), _flag_in()]}}
        router["upstream_log"] = [
            {
                "name": "envoy.access_loggers.stdout",
                "filter": failed,
                "typed_config": {
                    "@type": _ext("access_loggers.stream.v3.StdoutAccessLog"),
                    "log_format": {"json_format": ATTEMPT_LOG_FORMAT},
                },
            }
        ]
    return {"name": "envoy.filters.http.router", "typed_config": router}


RETRY_ON = "connect-failure,reset,refused-stream,retriable-status-codes,retriable-headers,5xx"
"""What moves a request to its next candidate: no connection, a reset before the answer, a
5xx, and (below) 429, 529 and the sidecar's mark on a provider's context-too-long 400."""


def chain_routes(config: Config) -> list[dict[str, Any]]:
    """One route per chain and kind of request (streamed or whole), matched on the chain
    header the sidecar sets. Attempt N goes to the chain's slot N (the priority-group cluster
    specifier, taking a fresh cluster on each retry); Envoy retries only before the answer's
    headers have reached the client. Streamed requests also move on after
    `listener.failover_timeout_s` without an answer; whole answers send their headers only
    when done, so theirs is the listener's idle timeout, as without failover."""
    out = []
    for chain in chains(config):
        names = slots(config, chain)
        groups = [
            {"name": f"attempt{i + 1}", "clusters": [{"cluster_name": name, "weight": 1}]}
            for i, name in enumerate(names)
        ]
        for streamed in (True, False):
            retry: dict[str, Any] = {
                "retry_on": RETRY_ON,
                "retriable_status_codes": [429, 529],
                "retriable_headers": [{"name": FAILOVER_HEADER, "present_match": True}],
                "num_retries": len(names) - 1,
                "retry_back_off": {"base_interval": "0.001s", "max_interval": "0.002s"},
                "refresh_cluster_on_retry": True,
            }
            if streamed and config.listener.failover_timeout_s:
                retry["per_try_timeout"] = _seconds(config.listener.failover_timeout_s)
            value = ",".join(names) + (STREAMED if streamed else "")
            plugin = {
                "name": "envoy.router.cluster_specifier_plugin.priority_group",
                "typed_config": {
                    "@type": _ext(
                        "router.cluster_specifiers.priority_group.v3.PriorityGroupClusterSpecifier"
                    ),
                    "priority_groups": groups,
                },
            }
            route = {
                "match": {
                    "prefix": "/",
                    "headers": [{"name": CHAIN_HEADER, "string_match": {"exact": value}}],
                },
                "request_body_buffer_limit": config.listener.max_body_bytes,
                "request_headers_to_remove": [CHAIN_HEADER],
                "response_headers_to_remove": [*GATEWAY_RESPONSE_HEADERS, FAILOVER_HEADER],
                "route": {
                    "inline_cluster_specifier_plugin": {"extension": plugin},
                    "auto_host_rewrite": True,
                    "timeout": "0s",
                    "idle_timeout": _seconds(config.listener.idle_timeout_s),
                    "retry_policy": retry,
                },
            }
            out.append(_with_decision_headers(config, route))
    return out


def _drop_client_headers(config: Config) -> dict[str, Any]:
    """Headers only the gateway may set, removed from the client's request before any filter
    runs. Only the sidecar picks the cluster: a client's own x-extproc-cluster can't steer a
    request, even with failure_mode_allow; nor can its own x-extproc-chain (with failover).
    The listener is an edge: a client's x-envoy-* headers (x-envoy-original-path, which the
    access log shows; retry and timeout overrides) are Envoy's own, not the client's. So is
    x-request-id, the access log's `request_id`: Envoy makes its own, and a client's is kept as
    x-client-request-id (an empty value is not added)."""
    keep_client_id = {"key": CLIENT_REQUEST_ID, "value": "%REQ(x-request-id)%"}
    return {
        "name": "envoy.http.early_header_mutation.header_mutation",
        "typed_config": {
            "@type": _ext("http.early_header_mutation.header_mutation.v3.HeaderMutation"),
            "mutations": [
                {"remove": CLUSTER_HEADER},
                *([{"remove": CHAIN_HEADER}] if chains(config) else []),
                {"remove_on_match": {"key_matcher": {"prefix": "x-envoy-"}}},
                {
                    "append": {
                        "header": keep_client_id,
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }
                },
                {"remove": "x-request-id"},
            ],
        },
    }


def _status_is(status: int) -> dict[str, Any]:
    value = {"default_value": status, "runtime_key": f"extproc.local_reply.{status}"}
    return {"status_code_filter": {"comparison": {"op": "EQ", "value": value}}}


def _flag_in(*flags: str) -> dict[str, Any]:
    """Any of `flags`; with none named, any flag at all."""
    return {"response_flag_filter": {"flags": list(flags)}}


def _status_at_least(status: int) -> dict[str, Any]:
    value = {"default_value": status, "runtime_key": f"extproc.attempt_log.{status}"}
    return {"status_code_filter": {"comparison": {"op": "GE", "value": value}}}


def _routed(config: Config) -> dict[str, Any]:
    """The sidecar chose a provider: its decision metadata names one."""
    return {
        "metadata_filter": {
            "matcher": {
                "filter": config.sidecar.metadata_namespace,
                "path": [{"key": "provider"}],
                "value": {"present_match": True},
            },
            "match_if_key_not_found": False,
        }
    }


def _unparsed() -> dict[str, Any]:
    """Envoy could not read the request's headers, so the sidecar never saw it."""
    return {
        "header_filter": {
            "header": {"name": ":method", "present_match": True, "invert_match": True}
        }
    }


def _all(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {"and_filter": {"filters": list(conditions)}}


def _anthropic_reply(condition: dict[str, Any], error_type: str, message: str) -> dict[str, Any]:
    """A local reply mapper: Envoy's own errors matching `condition` as an Anthropic error,
    marked so that the sidecar passes it on rather than translating it as a provider's."""
    return {
        "filter": condition,
        "headers_to_add": [
            {
                "header": {"key": LOCAL_REPLY_HEADER, "value": error_type},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
        "body_format_override": {
            "json_format": {"type": "error", "error": {"type": error_type, "message": message}},
            "content_type": "application/json",
        },
    }


def _cel(expression: str) -> dict[str, Any]:
    """A filter on what Envoy knows of the request, in CEL (response.code_details, say)."""
    return {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": _ext("access_loggers.filters.cel.v3.ExpressionFilter"),
                "expression": expression,
            },
        }
    }


def _at_concurrency_limit() -> dict[str, Any]:
    """A circuit breaker tripped: on a provider cluster (flag UO) or on the sidecar's, whose
    overflow shows only in the response code details of the ext_proc error."""
    overflow_details = _cel("response.code_details.contains('overflow')")
    return {"or_filter": {"filters": [_flag_in("UO"), overflow_details]}}


def _with_retry_after(config: Config, mapper: dict[str, Any]) -> dict[str, Any]:
    """With failover, `mapper` also carries the soonest retry-after that the chain's failed
    answers gave (the failover attempts write it, extproc/proxy/attempt.py): the last
    candidate got no answer, the client still learns when to come back. Envoy leaves an
    empty value out."""
    if not chains(config):
        return mapper
    value = f"%DYNAMIC_METADATA({config.sidecar.metadata_namespace}:retry_after)%"
    retry_after = {
        "header": {"key": "retry-after", "value": value},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
    }
    return {**mapper, "headers_to_add": [*mapper["headers_to_add"], retry_after]}


def local_replies(config: Config) -> dict[str, Any]:
    """Envoy's own error replies in Anthropic's format, so SDKs and Claude Code show why.

    First match wins; `%RESPONSE_CODE_DETAILS%` says what Envoy saw. The sidecar's replies
    are Anthropic JSON already and carry no response flag; of their statuses (400, 401, 404,
    413, 429, 500, 529) only 413 is matched here, with the same error type. Envoy's 500 for
    an answer too large to buffer is matched by its details, and becomes a 502 like the
    sidecar's own for an answer it won't read.
    """
    limit = config.listener.max_body_bytes
    details = "(%RESPONSE_CODE_DETAILS%)"
    sidecar_down = "The gateway's routing sidecar is unavailable (is extproc serve running?)"
    limit_reached = _anthropic_reply(
        _at_concurrency_limit(),
        "overloaded_error",
        f"The gateway is at its concurrency limit ({config.listener.max_concurrent_requests} "
        "requests, listener.max_concurrent_requests); retry shortly.",
    )
    return {
        "mappers": [
            {**limit_reached, "status_code": 529},
            _anthropic_reply(
                _status_is(413),
                "request_too_large",
                f"The request is larger than this gateway accepts ({limit} bytes, "
                "listener.max_body_bytes).",
            ),
            # No cluster chosen: the sidecar was skipped (failure_mode_allow) or gave none.
            _anthropic_reply(_flag_in("NC"), "api_error", f"{sidecar_down} {details}"),
            # A provider's cluster has one host, found by DNS (or given as an address): no
            # host at all means its DNS lookup failed or has not answered yet.
            _anthropic_reply(
                _flag_in("UH"),
                "api_error",
                "The gateway has no address for the provider: its DNS lookup failed or has "
                "not answered yet (%UPSTREAM_CLUSTER%, %RESPONSE_CODE_DETAILS%)",
            ),
            _with_retry_after(
                config,
                _anthropic_reply(
                    _flag_in("UF", "DF", "URX", "UC", "UPE"),
                    "api_error",
                    f"The gateway could not reach the provider {details}",
                ),
            ),
            # A translated answer that is not streamed is buffered whole, up to the route's
            # limit; past it Envoy answers 500 in place of the provider's answer.
            {
                **_anthropic_reply(
                    _cel("response.code_details == 'response_payload_too_large'"),
                    "api_error",
                    "The gateway stopped reading the provider's answer: it is larger than "
                    f"{limit} bytes (listener.max_body_bytes) {details}",
                ),
                "status_code": 502,
            },
            # What is left of 503s: the ext_proc call failed (status_on_error).
            _anthropic_reply(_status_is(503), "api_error", f"{sidecar_down} {details}"),
            _anthropic_reply(
                _all(_status_is(504), _routed(config)),
                "timeout_error",
                f"The provider was silent longer than listener.idle_timeout_s {details}",
            ),
            # Not routed yet: the sidecar did not answer (stalled, or overloaded).
            _anthropic_reply(
                _status_is(504),
                "timeout_error",
                f"The gateway's routing sidecar did not answer in time {details}",
            ),
            _anthropic_reply(
                _all(_status_is(408), _unparsed()),
                "timeout_error",
                "The request's headers did not arrive within "
                f"listener.request_headers_timeout_s {details}",
            ),
            _anthropic_reply(
                _status_is(408),
                "timeout_error",
                f"The request was idle longer than listener.idle_timeout_s {details}",
            ),
            # Requests Envoy refused before reading their headers (its DPE flag is set only
            # after the reply is written): malformed HTTP, headers too large, HTTP/1.0.
            *(
                _anthropic_reply(
                    _all(_status_is(status), _unparsed()),
                    "invalid_request_error",
                    f"{what} {details}",
                )
                for status, what in (
                    (400, "Malformed HTTP request"),
                    (431, "The request's headers are too large"),
                    (426, "HTTP/1.1 or HTTP/2 is required"),
                )
            ),
            _anthropic_reply(
                _flag_in("DPE"), "invalid_request_error", f"Malformed HTTP request {details}"
            ),
        ]
    }


def _one_endpoint(cluster: str, host: str, port: int) -> dict[str, Any]:
    address = {"socket_address": {"address": host, "port_value": port}}
    return {
        "cluster_name": cluster,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
    }


def _circuit_breakers(limit: int, retries: bool = False) -> dict[str, Any]:
    """At most `limit` requests in flight (Envoy's default is 1,024 of each); with `retries`
    (failover), as many retries: Envoy's default of 3 at once would hand an outage under
    load to the clients (upstream_rq_retry_overflow)."""
    limits = {"max_connections": limit, "max_pending_requests": limit, "max_requests": limit}
    if retries:
        limits["max_retries"] = limit
    return {"thresholds": [{"priority": "DEFAULT", **limits}]}


def _provider_cluster(name: str, origin: Origin, limit: int, retries: bool) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "LOGICAL_DNS",
        "connect_timeout": "10s",
        # Try IPv4 first: a `localhost` upstream bound to 127.0.0.1 otherwise fails on ::1.
        "dns_lookup_family": "V4_PREFERRED",
        # Envoy starts serving without this provider's first DNS answer: a resolver that
        # never answers must not keep the other providers from serving. Until it answers,
        # requests routed here get a 503 that names DNS (flag UH: no address known).
        "wait_for_warm_on_init": False,
        "per_connection_buffer_limit_bytes": CONNECTION_BUFFER_BYTES,
        "circuit_breakers": _circuit_breakers(limit, retries),
        "load_assignment": _one_endpoint(name, origin.host, origin.port),
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


def _extproc_cluster(config: Config, name: str) -> dict[str, Any]:
    """The sidecar, over HTTP/2. A name (a Kubernetes headless Service) is resolved to every
    address behind it, one endpoint each, so ext_proc streams spread across the replicas."""
    sidecar = config.sidecar
    by_name = {} if is_ip(sidecar.address) else {"dns_lookup_family": "V4_PREFERRED"}
    return {
        "name": name,
        "type": "STATIC" if is_ip(sidecar.address) else "STRICT_DNS",
        **by_name,
        "connect_timeout": "1s",
        # Bodies reach the sidecar whole, in one gRPC message, over one shared connection.
        "per_connection_buffer_limit_bytes": config.listener.max_body_bytes,
        "circuit_breakers": _circuit_breakers(config.listener.max_concurrent_requests),
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _ext("upstreams.http.v3.HttpProtocolOptions"),
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": _one_endpoint(name, sidecar.address, sidecar.port),
    }


def _report_cluster(config: Config) -> dict[str, Any]:
    """The sidecar's health port, over HTTP/1.1, for usage.lua's reports (REPORT_CLUSTER):
    where the health port listens, when that is one address, else where the sidecar is."""
    sidecar = config.sidecar
    host = sidecar.health_address
    if host in ("", "0.0.0.0", "::"):
        host = sidecar.address
    by_name = {} if is_ip(host) else {"dns_lookup_family": "V4_PREFERRED"}
    return {
        "name": REPORT_CLUSTER,
        "type": "STATIC" if is_ip(host) else "STRICT_DNS",
        **by_name,
        "connect_timeout": "1s",
        "load_assignment": _one_endpoint(REPORT_CLUSTER, host, sidecar.health_port),
    }


def _overload_manager(config: Config) -> dict[str, Any]:
    """At most `listener.max_connections` client connections at once; past it, Envoy closes
    each new one at once. The admin port is not counted (`extproc up` checks readiness there)."""
    limit = {"max_active_downstream_connections": config.listener.max_connections}
    return {
        "resource_monitors": [
            {
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {
                    "@type": _ext(
                        "resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"
                    ),
                    **limit,
                },
            }
        ]
    }


def process_settings(config: Config) -> dict[str, Any]:
    """What only a new Envoy process takes: its admin port and overload manager."""
    return {
        "admin": {
            "address": {
                "socket_address": {"address": "127.0.0.1", "port_value": config.listener.admin_port}
            },
            "ignore_global_conn_limit": True,
        },
        "overload_manager": _overload_manager(config),
    }


def bootstrap(config: Config) -> dict[str, Any]:
    return {
        **process_settings(config),
        "static_resources": {
            "listeners": [listener(config)],
            "clusters": clusters(config),
        },
    }


def clusters(
    config: Config, sidecar_cluster: str = EXTPROC_CLUSTER, reports: bool = True
) -> list[dict[str, Any]]:
    """The sidecar's cluster, named `sidecar_cluster`, its health port's for usage.lua's
    reports (unless `reports` is false: no Lua filter to send them), then one per provider
    origin; with failover, the fail-fast cluster and the chains' slots."""
    limit = config.listener.max_concurrent_requests
    failover = bool(chains(config))
    return [
        _extproc_cluster(config, sidecar_cluster),
        *([_report_cluster(config)] if reports else []),
        *(_provider_cluster(name, o, limit, failover) for name, o in origins(config).items()),
        *(failover_clusters(config, sidecar_cluster) if failover else ()),
    ]


FAILFAST_CLUSTER = "extproc_failfast"
FAILFAST_SOCKET = "/nonexistent/extproc-failfast.sock"
"""A Unix socket path nothing can bind (its folder does not exist): connecting fails at once."""


def failover_clusters(config: Config, sidecar_cluster: str) -> list[dict[str, Any]]:
    """The fail-fast cluster, then each chain slot: an aggregate cluster over its provider's
    origin and the fail-fast one. A provider with no address (its DNS lookup failed) fails
    its attempt at once on the fail-fast cluster, and the request moves on; as a plain
    cluster in the chain it would end the request (no healthy upstream, not retried)."""
    limit = config.listener.max_concurrent_requests
    failfast = {
        "name": FAILFAST_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": FAILFAST_CLUSTER,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": FAILFAST_SOCKET}}}}]}
            ],
        },
    }
    wanted: dict[str, Provider] = {}
    for chain in chains(config):
        wanted.setdefault(head_slot(config, chain[0]), chain[0])
        for provider in chain[1:]:
            wanted.setdefault(failover_slot(config, provider), provider)
    slot_clusters = []
    for name, provider in wanted.items():
        slot: dict[str, Any] = {
            "name": name,
            "connect_timeout": "10s",
            "lb_policy": "CLUSTER_PROVIDED",
            "circuit_breakers": _circuit_breakers(limit, retries=True),
            "cluster_type": {
                "name": "envoy.clusters.aggregate",
                "typed_config": {
                    "@type": _ext("clusters.aggregate.v3.ClusterConfig"),
                    "clusters": [cluster_name(config, provider), FAILFAST_CLUSTER],
                },
            },
        }
        if name.startswith(FAILOVER_PREFIX):
            filters = [upstream_extproc_filter(config, sidecar_cluster)]
        else:
            filters = [chain_head_filter(config, name)]
        slot["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _ext("upstreams.http.v3.HttpProtocolOptions"),
                "explicit_http_config": {"http_protocol_options": {}},
                "http_filters": [
                    *filters,
                    {
                        "name": "envoy.filters.http.upstream_codec",
                        "typed_config": {
                            "@type": _ext("filters.http.upstream_codec.v3.UpstreamCodec")
                        },
                    },
                ],
            }
        }
        slot_clusters.append(slot)
    return [failfast, *slot_clusters]


def upstream_extproc_filter(config: Config, sidecar_cluster: str) -> dict[str, Any]:
    """The ext_proc filter on a `fo__` slot: one stream per attempt, to the same sidecar,
    which tells the attempt from a client's request by `xds.cluster_name` (the slot) and
    rewrites it for that candidate from the client's body (extproc/proxy/attempt.py). It
    reads the answer's headers: a provider's context-too-long 400 is marked for a retry, and
    a translated answer translated."""
    downstream = _extproc_filter(config, sidecar_cluster)["typed_config"]
    namespace = config.sidecar.metadata_namespace
    headers = (*UPSTREAM_READ_HEADERS, *(GATEWAY_KEY_HEADERS if config.gateway_keys else ()))
    return {
        "name": EXTPROC_FILTER,
        "typed_config": {
            **downstream,
            "request_attributes": ["xds.cluster_name"],
            "processing_mode": {
                **downstream["processing_mode"],
                "response_header_mode": "SEND",
            },
            "metadata_options": {
                "forwarding_namespaces": {"untyped": [namespace]},
                "receiving_namespaces": {"untyped": [namespace]},
            },
            "forward_rules": {
                "allowed_headers": {"patterns": [{"exact": name} for name in headers]}
            },
        },
    }


def versioned_sidecar_cluster(config: Config) -> str:
    """A name for the sidecar's cluster that changes whenever its settings do.

    Envoy resets every ext_proc stream on a cluster that is modified or removed (the gRPC
    client belongs to the cluster), so a running Envoy gets a changed sidecar cluster as a
    new one beside the old, which keeps the streams that older listeners opened on it.
    """
    settings = json.dumps(_extproc_cluster(config, EXTPROC_CLUSTER), sort_keys=True)
    return f"{EXTPROC_CLUSTER}-{hashlib.sha256(settings.encode()).hexdigest()[:8]}"


def render(config: Config) -> str:
    return HEADER + yaml.safe_dump(bootstrap(config), sort_keys=False, width=120)


FRAGMENT_HEADER = """\
# extproc pieces for an Envoy you already run (docs/mesh.md), rendered from config.yaml.
# http_filters: put the ext_proc filter before envoy.filters.http.router. It is disabled
#   by default: only the route below turns it on, so other virtual hosts never see it.
# routes: the only routes of a virtual host (or listener) that serves Claude Code alone, in
#   this order: with fallbacks, one per failover chain, then the one the sidecar's cluster
#   header picks. A chain route's cluster specifier plugin and the slots' upstream ext_proc
#   filter have no field in Istio's VirtualService or Envoy Gateway's routes: add them with
#   an EnvoyFilter or EnvoyPatchPolicy (render-envoy --mesh-failover, docs/mesh.md). The
#   log of each failed attempt is your router's upstream_log (not in this fragment).
# clusters: add to static_resources.clusters (or your CDS).
# early_header_mutation_extensions: into your HttpConnectionManager; removes a client's
#   own x-extproc-cluster (only the sidecar picks a provider) and x-envoy-* headers.
# access_log_format: fields to add to your JSON access log to see each decision.
# The route raises the buffer limit to {max_body} bytes for Claude Code's request bodies.
# The HttpConnectionManager needs normalize_path and merge_slashes set to true (the
# sidecar routes or passes paths by their exact text).
# With EXTPROC_SIDECAR_SECRET set, the ext_proc filter carries it: keep this as private as
# the provider keys.
"""


def scoped_extproc_filter(config: Config) -> dict[str, Any]:
    """The ext_proc filter off by default, for a connection manager shared with other virtual
    hosts: the sidecar adds provider keys, so it must see no request but those it routes."""
    return {**_extproc_filter(config, EXTPROC_CLUSTER), "disabled": True}


def enabled_route(config: Config) -> dict[str, Any]:
    """The cluster-header route, with the (otherwise disabled) ext_proc filter on."""
    return {"name": "extproc", **filter_enabled(_route(config))}


def filter_enabled(route: dict[str, Any], filter_name: str = EXTPROC_FILTER) -> dict[str, Any]:
    """`route` with the (otherwise disabled) ext_proc filter named `filter_name` on."""
    enable = {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {}}
    return {**route, "typed_per_filter_config": {filter_name: enable}}


def fragment(config: Config) -> str:
    """Just the filter, route and clusters, to merge into an existing Envoy config."""
    pieces = {
        "http_filters": [scoped_extproc_filter(config)],
        "routes": [*map(filter_enabled, chain_routes(config)), enabled_route(config)],
        "clusters": clusters(config, reports=False),
        "early_header_mutation_extensions": [_drop_client_headers(config)],
        "access_log_format": access_log_format(config),
    }
    header = FRAGMENT_HEADER.format(max_body=config.listener.max_body_bytes)
    return header + yaml.safe_dump(pieces, sort_keys=False, width=120)
