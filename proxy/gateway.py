"""One proxy instance's long-lived parts, and the background work that keeps them fresh.

`Gateway` owns the config, the in-process catalog, the runtime state, the metrics, the upstream
client and (when reachable) the database pool. `start()` and `stop()` are called by the app's
lifespan: every background task started here is cancelled and awaited in `stop()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg

from proxy.attempts import AttemptContext
from proxy.catalog import load_offers
from proxy.catalog_cache import Catalog
from proxy.config import Config
from proxy.database import create_pool
from proxy.errors import CatalogError
from proxy.metrics import Metrics
from proxy.state import RuntimeState
from proxy.types import CircuitState
from proxy.upstream import AiohttpUpstream, UpstreamClient

log = logging.getLogger("gatewayz.gateway")
GAUGE_INTERVAL_S = 5.0


class Gateway:
    def __init__(self, config: Config, *, client: UpstreamClient | None = None) -> None:
        self.config = config
        self.settings = config.proxy
        self.metrics = Metrics()
        self.state = RuntimeState(config.proxy)
        self.catalog = Catalog(config)
        self.client = client or AiohttpUpstream(connect_timeout_s=config.proxy.connect_timeout_s)
        self.keys = {p.slug: p.api_key for p in config.providers}
        self.pool: asyncpg.Pool | None = None
        self.database_ok = False
        self.started_at = time.time()
        self._tasks: list[asyncio.Task[None]] = []
        self.context = AttemptContext(self.settings, self.client, self.state, self.keys, self.metrics)
        self._bind_labels()

    def _bind_labels(self) -> None:
        self.metrics.bound(self.catalog.models(), self.keys)

    async def start(self) -> None:
        await self.connect_database()
        await self.refresh_catalog()
        self.spawn(self._every(self.settings.catalog_ttl_s, self.refresh_catalog), "catalog refresh")
        self.spawn(self._every(GAUGE_INTERVAL_S, self._update_gauges), "state gauges")

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
        await self.client.aclose()
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    async def connect_database(self) -> None:
        """Connect and migrate; when the database is unreachable, serve the config's offers."""
        if not self.config.database_url:
            return
        from proxy.migrate import apply_migrations

        try:
            self.pool = await create_pool(self.config.database_url.reveal(), min_size=1, max_size=4)
            await apply_migrations(self.pool)
        except (CatalogError, OSError, asyncpg.PostgresError) as exc:
            log.warning("database unavailable at start-up, serving the config's offers: %s", exc)

    async def refresh_catalog(self) -> None:
        """Reload the catalog from the database; on failure keep what we have (stale beats failing)."""
        if self.pool is None:
            self.database_ok = False
            return
        try:
            offers = await load_offers(self.pool)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            if self.database_ok:
                log.warning("catalog refresh failed, keeping the last known offers: %s", exc)
            self.database_ok = False
            return
        self.catalog.replace(offers, source="postgres")
        self.database_ok = True
        self._bind_labels()

    def _update_gauges(self) -> Awaitable[None]:
        now = time.time()
        metrics = self.metrics
        for model, offers in self.catalog.offers().items():
            for offer in offers:
                view = self.state.view(offer, now)
                labels = (metrics.provider(offer.provider_slug), metrics.model(model))
                metrics.offer_state.labels(*labels).set(offer.effective_health.gauge)
                metrics.circuit_open.labels(*labels).set(1 if view.circuit is CircuitState.OPEN else 0)
        return asyncio.sleep(0)

    @staticmethod
    async def _every(seconds: float, work: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await work()
            except Exception:  # a background loop must survive; the failure is logged with its context
                log.exception("background task %s failed", getattr(work, "__name__", work))
