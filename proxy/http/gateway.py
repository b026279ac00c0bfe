"""One proxy instance's long-lived parts, and the background work that keeps them fresh.

`Gateway` owns the config, the in-process catalog, the runtime state, the metrics, the upstream
client and (when reachable) the database pool. `start()` and `stop()` are called by the app's
lifespan: every background task started here is cancelled and awaited in `stop()`.

Background work, none of it on the request path:
- ranking events (`proxy.runtime.refresh`): from Redis pub/sub (`proxy.runtime.sharing.peers`) when `REDIS_URL` is set,
  else from Postgres `LISTEN` (`proxy.runtime.sharing.pg_listen`); the TTL refresh is the safety net, and also
  reconnects a database that was down at start-up;
- shared state: cooldowns and opened circuits published to, and applied from, the other instances
  (and the other workers of `serve --workers N`), through Redis (`proxy.runtime.sharing.peers`) or else
  Postgres NOTIFY (`proxy.runtime.sharing.pg_peers`);
- the passive-health flusher (`proxy.runtime.flush`), every `health_flush_s`, and once more at shutdown;
- the client keys' spend (`proxy.billing.spend_sync`), every `budget_sync_s`, and once more at shutdown:
  added to the shared counters (Redis, else Postgres `key_spend`) and read back from them;
- the usage writer (`proxy.billing.writer`), when a database is configured: every `[usage] flush_s`,
  on SIGHUP (`reload`) and once more at shutdown; and the usage retention, every `retention_check_s`;
- the database watch (`proxy.store.outage`): every database error and lost connection goes to one
  `DatabaseHealth`, which `/readyz` reads and which logs an outage once at each end; while the
  database is down it is probed (backing off to 5 s) and, once it answers, the catalog is reloaded.

Started while the database is unreachable, the gateway serves its last known catalog, the newest of
the file in the data folder and the Redis copy (`proxy.store.snapshot`), rather than the config's
pinned offers alone; `/readyz` says which (`catalog.source`: `disk` or `redis`).

`reload(config)` applies a re-read config (`proxy.http.reload` says what can change live): it builds
one `LiveConfig` snapshot and swaps the one reference to it (`live.current`). Every reader goes
through that reference (a request takes it once when it arrives, so a reload never changes a request
in flight); only the catalog, which merges the config's offers with the database's, is rebuilt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg

from proxy.billing.spend import SpendLedger
from proxy.billing.spend_sync import PostgresSpend, RedisSpend, SpendStore, SpendSync
from proxy.billing.spool import Spool, spool_folder
from proxy.billing.writer import MB, UsageWriter
from proxy.config import Config, ProxySettings
from proxy.errors import CatalogError
from proxy.failover.accounting import Accounting
from proxy.failover.attempts import AttemptContext
from proxy.failover.hedge import HedgeBudgets
from proxy.failover.model_fallbacks import ModelRouter
from proxy.http.reload import live_config, reload_summary, restart_only_changes
from proxy.runtime.catalog import CONFIG_SOURCE, Catalog
from proxy.runtime.flush import HealthFlusher
from proxy.runtime.live import Live, LiveConfig
from proxy.runtime.metrics import Metrics
from proxy.runtime.refresh import CatalogRefresher
from proxy.runtime.response_pins import ResponsePins
from proxy.runtime.sharing.peers import SharedState
from proxy.runtime.sharing.pg_listen import PostgresListener
from proxy.runtime.sharing.pg_peers import PostgresPeers
from proxy.runtime.state import RuntimeState
from proxy.store.database import DATABASE_ERRORS, create_pool, database_fingerprint
from proxy.store.outage import DatabaseHealth, probe, watch_database
from proxy.store.redis import redis_client
from proxy.store.snapshot import CatalogSnapshots, snapshot_path
from proxy.store.wire import catalog_key
from proxy.types import CircuitState
from proxy.upstream.client import AiohttpUpstream, UpstreamClient

log = logging.getLogger("gatewayz.gateway")
GAUGE_INTERVAL_S = 5.0
GAUGE_SLICE = 100  # offers whose gauges are updated per turn of the event loop
FINAL_FLUSH_TIMEOUT_S = 2.0


class Gateway:
    def __init__(self, config: Config, *, client: UpstreamClient | None = None) -> None:
        self.live = Live(config)
        self.metrics = Metrics()
        self.state = RuntimeState(self.live)
        self.spend = SpendLedger(lambda: self.live.current.budgets)
        self.accounting = Accounting(self.state, self.metrics, self.spend)
        self.catalog = Catalog(config)
        self.client = client or AiohttpUpstream(connect_timeout_s=config.proxy.connect_timeout_s)
        self.pool: asyncpg.Pool | None = None
        self.started_at = time.time()
        self._tasks: list[asyncio.Task[None]] = []
        self._migrated = False
        self._gauge_values: dict[tuple[str, str, str], int] = {}
        self.database: DatabaseHealth | None = None
        if config.database_url:
            self.database = DatabaseHealth(log, "serving the last known catalog until it is back")
        snapshot_redis = redis_client(config.redis_url) if config.redis_url else None
        fingerprint = database_fingerprint(config.database_url.reveal()) if config.database_url else ""
        self.snapshots = CatalogSnapshots(
            snapshot_path(config.data_dir), snapshot_redis, catalog_key(config.redis_prefix), fingerprint
        )
        self.refresher = CatalogRefresher(
            self.catalog, self.metrics, pool=lambda: self.pool, on_change=self._bind_labels,
            database=self.database, snapshots=self.snapshots,
        )  # fmt: skip
        self.shared: SharedState | None = None
        if config.redis_url:
            self.shared = SharedState(
                config.redis_url,
                config.redis_prefix,
                self.state,
                on_rankings=self.refresher.request,
            )
            self.state.publish = self.shared.publish
            self.refresher.cache = self.shared
        self.listener: PostgresListener | None = None
        self.pg_peers: PostgresPeers | None = None
        if config.database_url and self.shared is None:
            self.pg_peers = PostgresPeers(self.state, lambda: self.pool, database=self.database)
            self.state.publish = self.pg_peers.publish
            self.listener = PostgresListener(
                config.database_url.reveal(), self.refresher.request, on_state=self.pg_peers.receive,
                database=self.database,
            )  # fmt: skip
        pin_redis = redis_client(config.redis_url) if config.redis_url else None
        self.pins = ResponsePins(lambda: self.settings.response_pin_ttl_s, pin_redis, config.redis_prefix)
        self.flusher = HealthFlusher(self.state, lambda: self.pool, database=self.database)
        self.spend_sync = self._spend_sync(config)
        self.usage = self._usage_writer(config)
        if self.usage is not None:
            self.accounting.record_usage = self.usage.add
        self.context = AttemptContext(self.client, self.state, HedgeBudgets())
        self.router = ModelRouter(self.catalog, self.context)
        self._bind_labels()

    def _spend_sync(self, config: Config) -> SpendSync | None:
        """The client keys' spend shared through Redis, else Postgres (None: neither, each instance alone)."""
        store: SpendStore | None = None
        if config.redis_url:
            store = RedisSpend(config.redis_url, config.redis_prefix)
        elif config.database_url:
            store = PostgresSpend(lambda: self.pool)
        return None if store is None else SpendSync(self.spend, store, lambda: self.settings.budget_sync_s)

    def _usage_writer(self, config: Config) -> UsageWriter | None:
        """The usage records' writer, with its spool in the data folder (None: records are off)."""
        if not config.usage_enabled:
            return None
        spool = Spool(spool_folder(config.data_dir), int(config.usage.spool_max_mb * MB))
        return UsageWriter(lambda: self.config.usage, lambda: self.pool, spool, self.metrics, self.database)

    @property
    def config(self) -> Config:
        return self.live.current.config

    @property
    def settings(self) -> ProxySettings:
        return self.live.current.config.proxy

    @property
    def database_ok(self) -> bool:
        return self.database is not None and self.database.ok is True

    @property
    def database_status(self) -> str:
        """`ok`, `not_configured` or `unreachable`, as the database is now: a failed query, a failed
        probe or a connection the server closed marks it at once (`proxy.store.outage`)."""
        return "not_configured" if self.database is None else self.database.status

    @property
    def redis_status(self) -> str:
        """`ok`, `not_configured` or `unreachable`, as the subscription currently is."""
        return "not_configured" if self.shared is None else self.shared.status

    def _bind_labels(self) -> None:
        self.metrics.bound(self.catalog.models(), self.live.current.provider_keys)

    async def start(self) -> None:
        await self.connect_database()
        await self.refresh_catalog()
        if self.database is not None and not self.database_ok:
            await self.refresher.restore_snapshot()  # started without the database: its last known catalog
        if self.pool is not None and self.database is not None and self.config.database_url is not None:
            url = self.config.database_url.reveal()
            self.spawn(watch_database(url, self.database, on_back=self._database_back), "database watch")
        self.spawn(self._every(lambda: self.settings.catalog_ttl_s, self.refresh_catalog), "catalog refresh")
        self.spawn(self._every(lambda: GAUGE_INTERVAL_S, self.update_gauges), "state gauges")
        self.spawn(self.refresher.run(), "ranking events")
        if self.config.database_url:
            self.spawn(self._every(lambda: self.settings.health_flush_s, self.flush_health), "health flush")
        if self.usage is not None:
            self.spawn(self.usage.run(), "usage writer")
            self.spawn(self.usage.keep_retention(), "usage retention")
        if self.shared is not None:
            self.spawn(self.shared.run(), "redis shared state")
        if self.listener is not None:
            self.spawn(self.listener.run(), "postgres listen")
        if self.pg_peers is not None:
            self.spawn(self.pg_peers.run(), "postgres shared state")
        if self.spend_sync is not None:
            self.spawn(self.spend_sync.run(), "budget spend")

    def spawn(self, work: Awaitable[None], name: str) -> None:
        self._tasks.append(asyncio.ensure_future(work))
        self._tasks[-1].set_name(name)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.spend_sync is not None:
            await self.spend_sync.stop()  # before the pool closes: the last spend goes to the database
        await self.client.aclose()
        await self.pins.aclose()
        await self.snapshots.aclose()
        if self.usage is not None:
            await self.usage.close(FINAL_FLUSH_TIMEOUT_S)  # what Postgres does not take now is spooled
        if self.pool is not None:
            with contextlib.suppress(*DATABASE_ERRORS):
                async with asyncio.timeout(FINAL_FLUSH_TIMEOUT_S):
                    await self.flusher.flush()
            if self.database is not None:
                self.database.closing = True  # the connections it closes now are not an outage
            await self.pool.close()
            self.pool = None

    async def connect_database(self) -> None:
        """The pool (it connects on first use) and, once the database answers, the migrations."""
        if self.database is None or self.config.database_url is None:
            return
        if self.pool is None:
            try:
                url = self.config.database_url.reveal()
                self.pool = await create_pool(url, max_size=4, on_lost=self.database.connection_lost)
            except CatalogError as exc:  # a URL the driver refuses: nothing will ever connect
                self.database.failed(exc)
                return
        if await probe(self.config.database_url.reveal(), self.database):
            await self._migrate()

    async def _migrate(self) -> None:
        """Apply the migrations once, at the first contact with the database."""
        from proxy.store.migrate import apply_migrations

        if self._migrated or self.pool is None:
            return
        try:
            await apply_migrations(self.pool)
            self._migrated = True
        except DATABASE_ERRORS as exc:
            if self.database is not None:
                self.database.failed(exc)
        except CatalogError as exc:
            log.warning("migrations failed: %s", exc)

    async def _database_back(self) -> None:
        """The database answers again: migrate if it never was, and route by its catalog at once."""
        await self._migrate()
        await self.refresher.refresh_all()

    async def refresh_catalog(self) -> None:
        """Reload every model (Postgres, else the shared cache); on failure keep what we have."""
        await self.refresher.refresh_all()

    async def flush_health(self) -> None:
        """Write the passive counts; while Postgres is down they wait for the next flush."""
        with contextlib.suppress(*DATABASE_ERRORS):
            await self.flusher.flush()

    async def update_gauges(self) -> None:
        """The offer-state and circuit gauges of every offer, from what this instance knows now (every
        `GAUGE_INTERVAL_S`, and before each scrape). A gauge is set only when its value
        changed since the last pass, and the pass yields to the event loop every `GAUGE_SLICE`
        offers: setting hundreds of labelled gauges at once held the loop for 7-14 ms every 5 s
        (`python -m bench.tail`), a request's worth of delay on whichever request was in flight."""
        now = time.time()
        done = 0
        for model, offers in self.catalog.offers().items():
            for offer in offers:
                circuit = 1 if self.state.circuit(offer.key, now) is CircuitState.OPEN else 0
                state = self._changed(("state", offer.provider_slug, model), offer.effective_health.gauge)
                opened = self._changed(("circuit", offer.provider_slug, model), circuit)
                if state is not None or opened is not None:
                    self.metrics.set_offer_gauges(offer.provider_slug, model, state, opened)
                done += 1
                if done % GAUGE_SLICE == 0:
                    await asyncio.sleep(0)

    def _changed(self, key: tuple[str, str, str], value: int) -> int | None:
        """`value` when it differs from the one last set under `key`, else None."""
        if self._gauge_values.get(key) == value:
            return None
        self._gauge_values[key] = value
        return value

    def reload(self, reread: Config) -> str:
        """Apply a re-read config to the running gateway; return the log line that says what happened."""
        restart = restart_only_changes(self.config, reread)
        config = live_config(self.config, reread)
        held = None if self.catalog.source == CONFIG_SOURCE else self.catalog.held_keys()
        summary = reload_summary(self.config, config, restart, held)
        self.live.current = LiveConfig.of(config)
        self.catalog.reconfigure(config)
        self._bind_labels()
        self.flush_usage()
        return summary

    def flush_usage(self) -> None:
        """Write the pending usage records now (SIGHUP), in the background."""
        if self.usage is not None:
            self.spawn(self.usage.flush(), "usage flush")

    @staticmethod
    async def _every(seconds: Callable[[], float], work: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds())
            try:
                await work()
            except Exception:  # a background loop must survive; the failure is logged with its context
                log.exception("background task %s failed", getattr(work, "__name__", work))
