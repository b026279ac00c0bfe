"""Prometheus metrics of SPEC section 8, with bounded labels.

Each app owns a `Metrics` with its own registry (so tests can build many apps in one process). With
`PROMETHEUS_MULTIPROC_DIR` set (several uvicorn workers), values go to that folder and `/metrics`
aggregates every worker's files (`proxy.runtime.multiproc`: the gauges count only live workers).
Label values are limited to catalog models and configured providers: anything else is `other`.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterable
from typing import Protocol, overload

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector

from proxy.labels import bounded_label
from proxy.runtime.multiproc import ENV, forget_dead_workers
from proxy.types import Offer, OfferKey

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)

# Every metric name the proxy exports; the deployment tests check the dashboard against this list.
PROXY_METRICS = (
    "gatewayz_requests_total",
    "gatewayz_upstream_attempts_total",
    "gatewayz_failovers_total",
    "gatewayz_model_fallbacks_total",
    "gatewayz_upstream_ttfb_seconds",
    "gatewayz_request_duration_seconds",
    "gatewayz_overhead_seconds",
    "gatewayz_offer_state",
    "gatewayz_circuit_open",
    "gatewayz_tokens_total",
    "gatewayz_cost_usd_total",
    "gatewayz_cache_lookups_total",
    "gatewayz_hedges_total",
    "gatewayz_second_opinions_total",
    "gatewayz_usage_records_total",
)


class CounterLike(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class HistogramLike(Protocol):
    def observe(self, amount: float) -> None: ...


class PendingCounter:
    """A counter child's increments added up in a float until `Metrics.flush()` hands them to
    prometheus: an `inc()` on the request path is one addition, not a validation, a lock and a call."""

    __slots__ = ("target", "value")

    def __init__(self, target: Counter) -> None:
        self.target = target
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount

    def flush(self) -> None:
        if self.value:
            value, self.value = self.value, 0.0
            self.target.inc(value)


class PendingHistogram:
    """A histogram child's observations counted per bucket (a bisection) until `Metrics.flush()`.
    The buckets are prometheus's own: an observation goes to the first bucket whose upper bound is
    at least the value, the last bound being +Inf."""

    __slots__ = ("bounds", "counts", "target", "total")

    def __init__(self, target: Histogram) -> None:
        self.target = target
        self.bounds: list[float] = list(target._upper_bounds)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1
        self.total += amount

    def flush(self) -> None:
        counts = self.counts
        if not any(counts):
            return
        buckets = self.target._buckets
        for i, count in enumerate(counts):
            if count:
                buckets[i].inc(count)
                counts[i] = 0
        total, self.total = self.total, 0.0
        self.target._sum.inc(total)


class Metrics:
    """The proxy's metrics. Call `bound(models, providers)` whenever the catalog changes.

    In one process, counters and histograms asked for through `child()` are batched (`PendingCounter`,
    `PendingHistogram`) and handed to prometheus when `/metrics` is rendered, so the figures are exact
    at every scrape. With `PROMETHEUS_MULTIPROC_DIR` (several workers) they are written through at once:
    the other workers read this one's values from its files, at any time."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._models: frozenset[str] = frozenset()
        self._providers: frozenset[str] = frozenset()
        self._children: dict[tuple[int, tuple[str, ...]], object] = {}
        self._offer_labels: dict[OfferKey, tuple[str, str]] = {}
        self._pending: list[PendingCounter | PendingHistogram] = []
        self.batched = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
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
        self.model_fallbacks = Counter(
            "gatewayz_model_fallbacks",
            "Moves from one canonical model to the next of its fallback chain (catalog models only)",
            ["from_model", "to_model"],
            registry=r,
        )
        self.tokens = Counter("gatewayz_tokens", "Tokens served, from usage", ["provider", "model", "kind"], registry=r)
        self.cost = Counter(
            "gatewayz_cost_usd", "Cost in USD from the offer's pricing and usage", ["provider", "model"], registry=r
        )
        self.hedges = Counter(
            "gatewayz_hedges",
            "Hedged requests by outcome: won (the hedge served), lost (the first attempt served), "
            "cancelled (neither served), over_budget (wanted but the model's hedge budget was spent)",
            ["model", "outcome"],
            registry=r,
        )
        self.second_opinions = Counter(
            "gatewayz_second_opinions",
            "Refusals of unknown kind asked once of another provider's offer, by outcome: served (the outcome "
            "changed), refused (it refused too), failed (it failed otherwise); the first refusal is passed "
            "through unless served",
            ["model", "outcome"],
            registry=r,
        )
        self.usage_records = Counter(
            "gatewayz_usage_records",
            "Usage records by result: written (to Postgres), duplicate (already there: a replay), spooled "
            "(to the spool file while Postgres is down), dropped (the spool was full)",
            ["result"],
            registry=r,
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
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.circuit_open = Gauge(
            "gatewayz_circuit_open",
            "1 while the offer's circuit is open",
            ["provider", "model"],
            multiprocess_mode="livemax",
            registry=r,
        )

    def bound(self, models: Iterable[str], providers: Iterable[str]) -> None:
        self._models = frozenset(models)
        self._providers = frozenset(providers)
        self._offer_labels.clear()

    def _labels(self, offer: Offer) -> tuple[str, str]:
        """An offer's (provider, model) labels, bounded; remembered per offer until the catalog changes."""
        labels = self._offer_labels.get(offer.key)
        if labels is None:
            labels = self._offer_labels[offer.key] = (self.provider(offer.provider_slug), self.model(offer.model_id))
        return labels

    def model(self, name: str) -> str:
        return bounded_label(name, self._models)

    def provider(self, slug: str) -> str:
        return bounded_label(slug, self._providers)

    # --- what the proxy counts: one typed method per event, labels bounded here --------------------

    def count_request(self, route: str, model: str, outcome: str, duration_s: float) -> None:
        """A client request ended (`route` is the client's path or route pattern)."""
        self.child(self.requests, route, self.model(model), outcome).inc()
        self.child(self.duration, route).observe(duration_s)

    def observe_overhead(self, seconds: float) -> None:
        """Time a served request spent in the proxy itself, not waiting on a provider."""
        self.child(self.overhead).observe(seconds)

    def count_attempt(self, offer: Offer, result: str) -> None:
        provider, model = self._labels(offer)
        self.child(self.attempts, provider, model, result).inc()

    def count_failover(self, offer: Offer, reason: str) -> None:
        """A failed attempt at `offer` was followed by another attempt."""
        provider, model = self._labels(offer)
        self.child(self.failovers, model, provider, reason).inc()

    def count_model_fallback(self, from_model: str, to_model: str) -> None:
        self.child(self.model_fallbacks, self.model(from_model), self.model(to_model)).inc()

    def observe_ttfb(self, offer: Offer, seconds: float) -> None:
        self.child(self.ttfb, self._labels(offer)[0]).observe(seconds)

    def count_usage(self, offer: Offer, prompt: int, completion: int, cost_usd: float) -> None:
        """Tokens (by kind) and their cost in USD, for the offer that served."""
        provider, model = self._labels(offer)
        self.child(self.tokens, provider, model, "prompt").inc(prompt)
        self.child(self.tokens, provider, model, "completion").inc(completion)
        self.child(self.cost, provider, model).inc(cost_usd)

    def count_usage_records(self, result: str, count: int) -> None:
        self.child(self.usage_records, result).inc(count)

    def count_hedge(self, model: str, outcome: str) -> None:
        self.child(self.hedges, self.model(model), outcome).inc()

    def count_second_opinion(self, model: str, outcome: str) -> None:
        self.child(self.second_opinions, self.model(model), outcome).inc()

    def count_cache_lookups(self, layer: str, result: str, n: int) -> None:
        self.child(self.cache_lookups, layer, result).inc(n)

    def set_offer_gauges(self, provider: str, model: str, state: int | None, circuit_open: int | None) -> None:
        """The offer-state and circuit gauges of one offer (None leaves one as it is)."""
        labels = (self.provider(provider), self.model(model))
        if state is not None:
            self.child(self.offer_state, *labels).set(state)
        if circuit_open is not None:
            self.child(self.circuit_open, *labels).set(circuit_open)

    # --- the children behind them ------------------------------------------------------------------

    @overload
    def child(self, metric: Counter, *labels: str) -> CounterLike: ...
    @overload
    def child(self, metric: Histogram, *labels: str) -> HistogramLike: ...
    @overload
    def child(self, metric: Gauge, *labels: str) -> Gauge: ...

    def child(self, metric: Counter | Histogram | Gauge, *labels: str) -> object:
        """`metric.labels(*labels)`, remembered: the request path asks for the same few label sets
        thousands of times a second, and `labels()` validates and locks on every call. Bounded like
        the labels themselves (catalog models, configured providers, a fixed set of outcomes).
        Counters and histograms come batched (see the class) unless several workers share the figures."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = self._batched(metric.labels(*labels) if labels else metric)
        return found

    def _batched(self, child: MetricWrapperBase) -> object:
        if not self.batched:
            return child
        pending: PendingCounter | PendingHistogram
        if isinstance(child, Counter):
            pending = PendingCounter(child)
        elif isinstance(child, Histogram):
            pending = PendingHistogram(child)
        else:
            return child
        self._pending.append(pending)
        return pending

    def flush(self) -> None:
        """Hand every batched increment and observation to prometheus."""
        for pending in self._pending:
            pending.flush()

    def exposition(self) -> bytes:
        folder = os.environ.get(ENV)
        if folder:
            forget_dead_workers(folder)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        self.flush()
        return generate_latest(self.registry)
