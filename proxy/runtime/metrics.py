"""Prometheus metrics of SPEC section 8, with bounded labels.

Each app owns a `Metrics` with its own registry (so tests can build many apps in one process). With
`PROMETHEUS_MULTIPROC_DIR` set (several uvicorn workers), values go to that folder and `/metrics`
aggregates every worker's files. Label values are limited to catalog models and configured
providers: anything else is reported as `other`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector

from proxy.labels import bounded_label

M = TypeVar("M", bound=MetricWrapperBase)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)

# Every metric name the proxy exports; the deployment tests check the dashboard against this list.
PROXY_METRICS = (
    "gatewayz_requests_total",
    "gatewayz_upstream_attempts_total",
    "gatewayz_failovers_total",
    "gatewayz_upstream_ttfb_seconds",
    "gatewayz_request_duration_seconds",
    "gatewayz_overhead_seconds",
    "gatewayz_offer_state",
    "gatewayz_circuit_open",
    "gatewayz_tokens_total",
    "gatewayz_cost_usd_total",
    "gatewayz_cache_lookups_total",
)


class Metrics:
    """The proxy's metrics. Call `bound(models, providers)` whenever the catalog changes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._models: frozenset[str] = frozenset()
        self._providers: frozenset[str] = frozenset()
        self._children: dict[tuple[int, tuple[str, ...]], MetricWrapperBase] = {}
        self._traffic(self.registry)
        self._timings(self.registry)
        self._offers(self.registry)

    def _traffic(self, r: CollectorRegistry) -> None:
        self.requests = Counter(
            "gatewayz_requests",
            "Client requests by route, model and outcome",
            ["route", "model", "outcome"],
            registry=r,
        )
        self.attempts = Counter(
            "gatewayz_upstream_attempts",
            "Attempts at upstream offers by result",
            ["provider", "model", "result"],
            registry=r,
        )
        self.failovers = Counter(
            "gatewayz_failovers",
            "Moves from one offer to the next, by the reason the first one failed",
            ["model", "from_provider", "reason"],
            registry=r,
        )
        self.tokens = Counter("gatewayz_tokens", "Tokens served, from usage", ["provider", "model", "kind"], registry=r)
        self.cost = Counter(
            "gatewayz_cost_usd", "Cost in USD from the offer's pricing and usage", ["provider", "model"], registry=r
        )
        self.cache_lookups = Counter(
            "gatewayz_cache_lookups", "Catalog lookups by cache layer and result", ["layer", "result"], registry=r
        )

    def _timings(self, r: CollectorRegistry) -> None:
        self.ttfb = Histogram(
            "gatewayz_upstream_ttfb_seconds",
            "Time to the first byte of a provider's answer",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            "gatewayz_request_duration_seconds",
            "Whole request time as the client sees it",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "gatewayz_overhead_seconds",
            "Time a request spends in the proxy itself, not waiting on a provider",
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )

    def _offers(self, r: CollectorRegistry) -> None:
        self.offer_state = Gauge(
            "gatewayz_offer_state",
            "Offer health: 0 healthy, 1 degraded, 2 unhealthy, 3 unknown",
            ["provider", "model"],
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.circuit_open = Gauge(
            "gatewayz_circuit_open",
            "1 while the offer's circuit is open",
            ["provider", "model"],
            multiprocess_mode="max",
            registry=r,
        )

    def bound(self, models: Iterable[str], providers: Iterable[str]) -> None:
        self._models = frozenset(models)
        self._providers = frozenset(providers)

    def model(self, name: str) -> str:
        return bounded_label(name, self._models)

    def provider(self, slug: str) -> str:
        return bounded_label(slug, self._providers)

    def child(self, metric: M, *labels: str) -> M:
        """`metric.labels(*labels)`, remembered: the request path asks for the same few label sets
        thousands of times a second, and `labels()` validates and locks on every call. Bounded like
        the labels themselves (catalog models, configured providers, a fixed set of outcomes)."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return cast(M, found)

    def exposition(self) -> bytes:
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if folder:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
