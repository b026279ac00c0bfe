"""Prometheus metrics of the health worker (SPEC section 8), served on `failover health --metrics-port`.

The worker owns one `WorkerMetrics` with its own registry, so tests can build several in one process.
Labels are bounded like the proxy's: a provider that is not configured is reported as `other`.
`WORKER_METRICS` lists every exported name; the deployment tests check the Grafana dashboard
against it (and `proxy.runtime.metrics.PROXY_METRICS`), so a metric added here belongs in that tuple too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

from proxy.errors import CannotListen
from proxy.labels import bounded_label
from proxy.listen import listen_error

PROBE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Every metric name the worker exports, as Prometheus shows it (counters with their `_total`).
WORKER_METRICS = (
    "gatewayz_probes_total",
    "gatewayz_worker_leader",
    "gatewayz_probe_duration_seconds",
    "gatewayz_worker_rounds_total",
    "gatewayz_health_changes_total",
    "gatewayz_ranking_events_total",
    "gatewayz_history_pruned_total",
)
ROUND_OUTCOMES = ("probed", "standby", "failed")


class WorkerMetrics:
    """The health worker's metrics. Call `bound(providers)` whenever the configured providers change."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.probes = Counter(
            "gatewayz_probes",
            "Probes of offers by provider and result",
            ["provider", "result"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "gatewayz_worker_leader",
            "1 while this worker holds the probing leadership",
            registry=self.registry,
        )
        self.probe_duration = Histogram(
            "gatewayz_probe_duration_seconds",
            "Time a probe took, answer or timeout",
            ["provider"],
            buckets=PROBE_BUCKETS,
            registry=self.registry,
        )
        self._providers: frozenset[str] = frozenset()
        self._define_round_metrics()

    def _define_round_metrics(self) -> None:
        r = self.registry
        self.rounds = Counter(
            "gatewayz_worker_rounds",
            "Worker rounds: probed (as leader), standby (another worker leads), failed",
            ["outcome"],
            registry=r,
        )
        for outcome in ROUND_OUTCOMES:  # at 0 from the start, so the first failed round shows in increase()
            self.rounds.labels(outcome=outcome)
        self.changes = Counter(
            "gatewayz_health_changes",
            "Offer status changes the worker derived, by provider and new status",
            ["provider", "status"],
            registry=r,
        )
        self.ranking_events = Counter(
            "gatewayz_ranking_events",
            "Ranking-change events published, by channel (redis or postgres)",
            ["channel"],
            registry=r,
        )
        self.pruned = Counter(
            "gatewayz_history_pruned", "model_health_history rows deleted past the retention period", registry=r
        )

    def bound(self, providers: Iterable[str]) -> None:
        self._providers = frozenset(providers)

    def provider(self, slug: str) -> str:
        return bounded_label(slug, self._providers)

    def observe_probe(self, provider: str, result: str, seconds: float) -> None:
        """Count one probe; `result` must be a low-cardinality word ("ok", "503", "timeout")."""
        label = self.provider(provider)
        self.probes.labels(provider=label, result=result).inc()
        self.probe_duration.labels(provider=label).observe(seconds)

    def set_leader(self, is_leader: bool) -> None:
        self.leader.set(1 if is_leader else 0)

    def observe_round(self, outcome: str) -> None:
        """Count one round; `outcome` is one of `ROUND_OUTCOMES`."""
        self.rounds.labels(outcome=outcome).inc()

    def observe_change(self, provider: str, status: str) -> None:
        self.changes.labels(provider=self.provider(provider), status=status).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, port: int, host: str = "0.0.0.0") -> Callable[[], None]:  # noqa: S104
        """Serve `/metrics` on a background thread; return the function that stops it.

        All interfaces by default: in a container, Prometheus scrapes from another host.
        Raises `CannotListen` (one line, exit 1) when the port is busy.
        """
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise CannotListen(listen_error(host, port, exc, "--metrics-port")) from None

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join()

        return stop
