"""Prometheus metrics of the sidecar, served at `/metrics` on the health port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from extproc.decisions.decision import Decision

ROUTER_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


class Metrics:
    """One registry per server, so tests and reloads never share global state."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.decisions = Counter(
            "extproc_decisions",
            "Routing decisions by route, routed model and source.",
            ("route", "model", "source"),
            registry=self.registry,
        )
        self.router_latency = Histogram(
            "extproc_router_latency_seconds",
            "Time of fresh router classifications (not sticky hits).",
            buckets=ROUTER_BUCKETS,
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "extproc_router_fallbacks",
            "Decisions that fell back because the router was unavailable, failed or timed out.",
            ("reason",),
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "extproc_upstream_errors",
            "Error answers (HTTP 4xx/5xx) from providers whose answers the sidecar reads "
            "(translated ones, or all with listener.log_tokens); Envoy's cluster stats count all.",
            ("provider", "status"),
            registry=self.registry,
        )
        self.cost = Counter(
            "extproc_cost_usd",
            "What answers cost, in USD, by provider entry and route (rule name for rule "
            "decisions): answers whose tokens are known (translated ones, or all with "
            "listener.log_tokens) and whose model has a price.",
            ("provider", "route"),
            registry=self.registry,
        )
        self.failovers = Counter(
            "extproc_failovers",
            "Requests that moved on from a candidate, by that candidate's entry and why: its "
            "status, context_too_long, or unseen (no answer the sidecar read: a refused or "
            "silent provider, or a native head, whose answer goes past the sidecar).",
            ("provider", "reason"),
            registry=self.registry,
        )
        self.cooling_skips = Counter(
            "extproc_cooling_skips",
            "Requests that went past a provider because it was cooling down after failures.",
            ("provider",),
            registry=self.registry,
        )
        self.open_streams = Gauge(
            "extproc_open_streams", "ext_proc streams open now.", registry=self.registry
        )

    def record(self, decision: Decision) -> None:
        self.decisions.labels(decision.route, decision.routed_model, decision.source).inc()
        if decision.source == "router":
            self.router_latency.observe(decision.router_ms / 1000)
        if decision.source == "fallback":
            self.fallbacks.labels(_reason(decision.note)).inc()
        for provider in decision.cooled:
            self.cooling_skips.labels(provider).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _reason(note: str) -> str:
    """A low-cardinality label from a fallback note."""
    for reason in ("timed out", "failed", "unavailable", "loading"):
        if reason in note:
            return reason.replace(" ", "_")
    return "other"
