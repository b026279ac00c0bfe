"""The health worker: `failover health [--once] [--interval S] [--metrics-port P]`.

One round, run by the leader only (`health.leader`):
1. probe every active offer of a configured provider whose `probe` is not `none` (`health.probe`),
   at most `concurrency` at once, each start spread by up to `jitter_s`;
2. in one transaction: add the results to `model_health_tracking` (atomic increments, shared with
   the proxies' passive flush), derive every offer's status from its tracking row, probes and
   traffic alike (`health.derive`), write `models` and the providers' roll-ups, and add the
   `source = probe` history rows;
3. write the ranked offers to the shared Redis cache and, when a status changed, publish the
   ranking event (`health.publish`); then prune history past the retention period.
A standby worker only tries to take the leadership, once per interval.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import sys
from dataclasses import dataclass, replace
from types import TracebackType

import aiohttp
import asyncpg

from health.derive import Counts, RoundDecision, Thresholds, decide_round
from health.leader import Leadership
from health.metrics import WorkerMetrics
from health.probe import ProbeResult, ProbeTarget, probe_kind, probe_offer
from health.publish import RankingPublisher
from health.store import (
    add_probe_history,
    load_health_inputs,
    load_probe_offers,
    load_provider_health,
    prune_history,
    record_probes,
    write_decision,
)
from proxy.config import Config, command_config
from proxy.errors import CatalogError, ConfigError
from proxy.failover.ranking import rank_offers
from proxy.store.database import DATABASE_ERRORS, create_pool, database_url
from proxy.store.migrate import apply_migrations
from proxy.store.offers import load_offers
from proxy.store.outage import RETRY_MAX_S, RETRY_S, DatabaseHealth, probe, watch_database
from proxy.upstream.session import provider_session

log = logging.getLogger("gatewayz.health")


@dataclass(frozen=True, slots=True)
class RoundReport:
    """What one leader round did."""

    results: tuple[ProbeResult, ...]
    decision: RoundDecision
    event_channel: str  # where the ranking event went: redis, postgres, or "" (no status changed)
    pruned: int

    def line(self) -> str:
        failed = sum(not r.ok for r in self.results)
        changes = [
            f"{d.offer.provider_slug}:{d.offer.provider_model_id} {d.offer.health}->{d.health}"
            for d in self.decision.offers
            if d.changed
        ]
        return (
            f"probed {len(self.results)} offers ({failed} failed); "
            f"{len(changes)} status changes{': ' + ', '.join(changes) if changes else ''}"
        )


class HealthWorker:
    def __init__(
        self, config: Config, url: str, *, metrics: WorkerMetrics | None = None, rng: random.Random | None = None
    ) -> None:
        self.config = config
        self.settings = config.health
        self.url = url
        self.metrics = metrics or WorkerMetrics()
        self.metrics.bound(p.slug for p in config.providers)
        self.thresholds = Thresholds.from_settings(config.health)
        self.database = DatabaseHealth(log, "probing waits until it is back")
        self.leadership = Leadership(url, database=self.database)
        self.publisher = RankingPublisher(config)
        self.rng = rng or random.Random()
        self.pool: asyncpg.Pool | None = None
        self.session: aiohttp.ClientSession | None = None
        self._counts: dict[int, Counts] = {}
        self._watch: asyncio.Future[None] | None = None

    async def __aenter__(self) -> HealthWorker:
        self.pool = await wait_for_database(self.url, self.database)
        try:
            await apply_migrations(self.pool)
        except BaseException:
            await self.close()
            raise
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.settings.probe_timeout_s)
        self.session = provider_session(timeout)
        self._watch = asyncio.ensure_future(watch_database(self.url, self.database))
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Give up the leadership and close every connection; safe to call twice."""
        self.metrics.set_leader(False)
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        self.database.closing = True  # the connections closed now are not an outage
        await self.leadership.release()
        await self.publisher.close()
        if self.session is not None:
            await self.session.close()
            self.session = None
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    async def run_once(self) -> RoundReport | None:
        """One round; None when another worker leads (this one probed nothing)."""
        assert self.pool is not None, "use `async with HealthWorker(...)`"
        if not await self.leadership.ensure():
            self.metrics.set_leader(False)
            self.metrics.observe_round("standby")
            self._counts.clear()  # the leader's rounds moved the counts; start afresh on takeover
            return None
        self.metrics.set_leader(True)
        results = await self._probe_all(self._targets(await load_probe_offers(self.pool)))
        self.database.answered()
        decision = await self._record(results)
        ranked = {
            m: list(rank_offers(o, strategy=self.config.proxy.strategy).offers)
            for m, o in (await load_offers(self.pool)).items()
        }
        channel = await self.publisher.publish(self.pool, ranked, decision.changed_models)
        pruned = await prune_history(self.pool, self.settings.history_retention_days)
        self._observe(decision, channel, pruned)
        return RoundReport(tuple(results), decision, channel, pruned)

    def _targets(self, rows: list[asyncpg.Record]) -> list[ProbeTarget]:
        targets = {}
        for row in rows:
            provider = self.config.provider(row["provider_slug"])
            if provider is None or not provider.is_active or provider.probe == "none":
                continue
            kind = probe_kind(provider.probe, provider.served_endpoints(row["endpoints"]))
            targets[row["offer_id"]] = ProbeTarget(
                row["offer_id"], row["model_id"], provider.slug, row["provider_model_id"],
                provider.base_url, kind, provider.api_key, provider.api,
            )  # fmt: skip
        return list(targets.values())

    async def _probe_all(self, targets: list[ProbeTarget]) -> list[ProbeResult]:
        assert self.session is not None
        session, timeout = self.session, self.settings.probe_timeout_s
        slots = asyncio.Semaphore(self.settings.concurrency)

        async def probe(target: ProbeTarget) -> ProbeResult:
            await asyncio.sleep(self.rng.uniform(0.0, self.settings.jitter_s))
            async with slots:
                result = await probe_offer(session, target, timeout)
            self.metrics.observe_probe(target.provider_slug, result.result, result.elapsed_ms / 1000)
            return result

        return list(await asyncio.gather(*(probe(t) for t in targets)))

    async def _record(self, results: list[ProbeResult]) -> RoundDecision:
        assert self.pool is not None
        async with self.pool.acquire() as conn, conn.transaction():
            await record_probes(conn, results)
            inputs = await load_health_inputs(conn)
            providers = await load_provider_health(conn)
            decision = decide_round(inputs, self._counts, providers, self.thresholds)
            await write_decision(conn, decision)
            await add_probe_history(conn, results, decision)
        self._counts = {i.offer_id: (i.success_count, i.error_count) for i in inputs}
        return decision

    def _observe(self, decision: RoundDecision, channel: str, pruned: int) -> None:
        self.metrics.observe_round("probed")
        for d in decision.offers:
            if d.changed:
                log.info("%s:%s is now %s (was %s)", d.offer.provider_slug, d.offer.provider_model_id,
                         d.health, d.offer.health)  # fmt: skip
                self.metrics.observe_change(d.offer.provider_slug, d.health.value)
        if channel:
            self.metrics.ranking_events.labels(channel=channel).inc()
        if pruned:
            self.metrics.pruned.inc(pruned)

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
        """A round every `interval_s` until `stop` is set (or the task is cancelled)."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            started = loop.time()
            await self._round_surviving()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, self.settings.interval_s - (loop.time() - started)))

    async def _round_surviving(self) -> None:
        try:
            await self.run_once()
        except DATABASE_ERRORS as exc:
            self.database.failed(exc)  # the outage's one log line; the next round tries again
            self.metrics.observe_round("failed")
        except Exception:  # the worker must survive any one round; logged with its traceback and counted
            log.exception("health round failed")
            self.metrics.observe_round("failed")


async def wait_for_database(url: str, database: DatabaseHealth) -> asyncpg.Pool:
    """A pool on `url`, once the database answers: asked again (0.2 s apart, doubling up to 5 s) while
    the server is unreachable or the database does not exist yet, as `serve` does; the wait is one
    line when it starts and one when it ends (`database`). The pool reports a lost connection there."""
    try:
        pool = await create_pool(url, max_size=4, on_lost=database.connection_lost)
    except CatalogError as exc:  # a URL the driver refuses: waiting would not help
        database.failed(exc)
        raise
    delay_s = RETRY_S
    try:
        while not await probe(url, database):
            await asyncio.sleep(delay_s)
            delay_s = min(RETRY_MAX_S, delay_s * 2)
    except BaseException:
        await pool.close()
        raise
    return pool


def run_health(args: argparse.Namespace) -> int:
    """The CLI: run rounds (or one, `--once`) until SIGTERM/SIGINT; metrics on `--metrics-port`."""
    config = command_config(args)
    if args.interval is not None:
        if args.interval <= 0:
            raise ConfigError(f"--interval: must be greater than 0, got {args.interval:g}")
        config = replace(config, health=replace(config.health, interval_s=float(args.interval)))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for warning in config.key_warnings():
        log.warning("%s", warning)
    metrics = WorkerMetrics()
    stop_serving = metrics.serve(args.metrics_port) if args.metrics_port is not None else None
    try:
        return asyncio.run(_main(config, database_url(config), metrics, once=args.once))
    finally:
        if stop_serving is not None:
            stop_serving()


async def _main(config: Config, url: str, metrics: WorkerMetrics, *, once: bool) -> int:
    async with HealthWorker(config, url, metrics=metrics) as worker:
        if once:
            report = await worker.run_once()
            print(report.line() if report else "another health worker leads: nothing probed", file=sys.stderr)
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("health worker: a round every %g s", config.health.interval_s)
        await worker.run_forever(stop)
    return 0
