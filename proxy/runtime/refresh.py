"""Keeping the in-process catalog fresh, off the request path, through three layers.

    memory   the catalog this instance serves from; a ranking event it already applied is a hit
    redis    the shared cache of ranked offers the health worker writes (`{prefix}:offers`)
    postgres the source of truth (`load_offers`)

A ranking event (Redis pub/sub or Postgres NOTIFY) names models and a version (the writer's wall
clock after its commit). `request()` only records it; `run()` coalesces what piled up and refreshes
those models: memory first, then the cache entries at least that new, then Postgres for the rest.
The TTL safety net (`refresh_all`) reloads everything from Postgres, or from the cache when
Postgres is down; when both fail the last known offers stay in use (stale beats failing).
Every layer consulted counts one lookup per model in `gatewayz_cache_lookups_total{layer,result}`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

import asyncpg

from proxy.runtime.catalog import Catalog
from proxy.runtime.metrics import Metrics
from proxy.store.database import DATABASE_ERRORS
from proxy.store.offers import load_inactive_providers, load_offers
from proxy.store.redis import REDIS_ERRORS
from proxy.store.wire import RankingEvent
from proxy.types import Offer

log = logging.getLogger("gatewayz.refresh")


class OfferCache(Protocol):
    async def read_offers(self, models: Sequence[str] | None) -> dict[str, tuple[list[Offer], float]]: ...


class CatalogRefresher:
    def __init__(
        self,
        catalog: Catalog,
        metrics: Metrics,
        *,
        pool: Callable[[], asyncpg.Pool | None],
        cache: OfferCache | None = None,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.catalog = catalog
        self.metrics = metrics
        self.pool = pool
        self.cache = cache
        self.on_change = on_change
        self.clock = clock
        self.database_ok = False
        self.versions: dict[str, float] = {}  # model -> the version its offers in memory are known to be
        self._pending: dict[str, float] = {}
        self._everything = False
        self._wake = asyncio.Event()

    def _count(self, layer: str, result: str, n: int = 1) -> None:
        if n:
            self.metrics.cache_lookups.labels(layer, result).inc(n)

    def request(self, event: RankingEvent) -> None:
        """Note an event for `run()` (no I/O: listeners call this from their read loops)."""
        if event.models is None:
            self._everything = True
        for model in event.models or ():
            self._pending[model] = max(self._pending.get(model, -math.inf), event.version)
        self._wake.set()

    async def run(self) -> None:
        """Apply noted events until cancelled; a failed refresh is logged and the next event retried."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            everything, pending = self._everything, self._pending
            self._everything, self._pending = False, {}
            try:
                if everything:
                    await self.refresh_all()
                else:
                    await self.refresh_models(pending)
            except Exception:  # the loop must survive; the failure is logged with its context
                log.exception("catalog refresh after a ranking event failed")

    async def refresh_models(self, wanted: Mapping[str, float]) -> None:
        """Refresh the named models (model -> the version an event announced)."""
        stale = {m: v for m, v in wanted.items() if self.versions.get(m, -math.inf) < v}
        self._count("memory", "hit", len(wanted) - len(stale))
        self._count("memory", "miss", len(stale))
        if not stale:
            return
        found = await self._from_cache(stale)
        rest = [m for m in stale if m not in found]
        if rest:
            found.update(await self._from_database(rest))
        if found:
            self._install(found, source="redis" if not rest else "postgres")

    async def _from_cache(self, stale: Mapping[str, float]) -> dict[str, list[Offer]]:
        if self.cache is None:
            return {}
        try:
            cached = await self.cache.read_offers(list(stale))
        except REDIS_ERRORS:
            self._count("redis", "error", len(stale))
            return {}
        found = {}
        for model, version in stale.items():
            entry = cached.get(model)
            if entry is not None and entry[1] >= version:
                found[model] = entry[0]
                self.versions[model] = entry[1]
        self._count("redis", "hit", len(found))
        self._count("redis", "miss", len(stale) - len(found))
        return found

    async def _from_database(self, models: Sequence[str]) -> dict[str, list[Offer]]:
        pool = self.pool()
        started = self.clock()
        if pool is None:
            self._count("postgres", "error", len(models))
            return {}
        try:
            loaded = await load_offers(pool, models)
        except DATABASE_ERRORS as exc:
            self._database_failed(exc)
            self._count("postgres", "error", len(models))
            return {}
        self.database_ok = True
        self._count("postgres", "hit", len(loaded))
        self._count("postgres", "miss", len(models) - len(loaded))
        for model in models:
            self.versions[model] = started
        return {m: loaded.get(m, []) for m in models}

    def _install(self, found: Mapping[str, Iterable[Offer]], *, source: str) -> None:
        by_model = {m: list(offers) for m, offers in self.catalog.offers().items()}
        by_model.update({m: list(offers) for m, offers in found.items()})
        self.catalog.replace({m: o for m, o in by_model.items() if o}, source=source)
        self.on_change()

    async def refresh_all(self) -> None:
        """The TTL safety net: every model from Postgres, else from the shared cache, else unchanged."""
        pool = self.pool()
        started = self.clock()
        if pool is not None:
            try:
                loaded = await load_offers(pool)
                retired = await load_inactive_providers(pool)
            except DATABASE_ERRORS as exc:
                self._database_failed(exc)
                self._count("postgres", "error")
            else:
                self.database_ok = True
                self._count("postgres", "hit", len(loaded))
                self.catalog.replace(loaded, source="postgres", retired=retired)
                self.versions = dict.fromkeys(loaded, started)
                self.on_change()
                return
        else:
            self.database_ok = False
        await self._all_from_cache()

    async def _all_from_cache(self) -> None:
        if self.cache is None:
            return
        try:
            cached = await self.cache.read_offers(None)
        except REDIS_ERRORS:
            self._count("redis", "error")
            return
        fresh = {m: e for m, e in cached.items() if e[1] >= self.versions.get(m, -math.inf)}
        self._count("redis", "hit" if cached else "miss", max(len(cached), 1))
        if fresh:
            for model, (_, version) in fresh.items():
                self.versions[model] = version
            self._install({m: e[0] for m, e in fresh.items()}, source="redis")

    def _database_failed(self, exc: BaseException) -> None:
        if self.database_ok:
            log.warning("catalog refresh from Postgres failed, keeping the last known offers: %s", exc)
        self.database_ok = False
