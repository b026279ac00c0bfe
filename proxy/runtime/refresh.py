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

Each catalog it installs is also saved as the last known catalog (`proxy.store.snapshot`: a file in
the data folder, and Redis), which a proxy started while Postgres is unreachable serves from
(`restore_snapshot`). Database errors go to the process's `DatabaseHealth`, which logs the outage.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

import asyncpg

from proxy.runtime.catalog import CONFIG_SOURCE, Catalog
from proxy.runtime.metrics import Metrics
from proxy.store.database import DATABASE_ERRORS
from proxy.store.offers import load_inactive_providers, load_offers
from proxy.store.outage import DatabaseHealth
from proxy.store.redis import REDIS_ERRORS
from proxy.store.snapshot import CatalogSnapshots
from proxy.store.wire import CatalogSnapshot, RankingEvent
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
        database: DatabaseHealth | None = None,
        snapshots: CatalogSnapshots | None = None,
    ) -> None:
        self.catalog = catalog
        self.metrics = metrics
        self.pool = pool
        self.cache = cache
        self.on_change = on_change
        self.clock = clock
        self.database = database
        self.snapshots = snapshots
        self.versions: dict[str, float] = {}  # model -> the version its offers in memory are known to be
        self._pending: dict[str, float] = {}
        self._everything = False
        self._wake = asyncio.Event()

    @property
    def database_ok(self) -> bool:
        return self.database is not None and self.database.ok is True

    def _count(self, layer: str, result: str, n: int = 1) -> None:
        if n:
            self.metrics.count_cache_lookups(layer, result, n)

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
            await self._save()

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
        pool = self._usable_pool()
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
        self._database_answered()
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
        pool = self._usable_pool()
        started = self.clock()
        if pool is not None:
            try:
                loaded = await load_offers(pool)
                retired = await load_inactive_providers(pool)
            except DATABASE_ERRORS as exc:
                self._database_failed(exc)
                self._count("postgres", "error")
            else:
                self._database_answered()
                self._count("postgres", "hit", len(loaded))
                self.catalog.replace(loaded, source="postgres", retired=retired)
                self.versions = dict.fromkeys(loaded, started)
                self.on_change()
                await self._save()
                return
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
            await self._save()

    async def restore_snapshot(self) -> CatalogSnapshot | None:
        """Serve the newest last known catalog (disk or Redis) when this instance has nothing better
        than its config: started while Postgres is unreachable. The snapshot's models count as known
        at its version, so the shared cache replaces them only with newer entries."""
        if self.snapshots is None or self.catalog.source != CONFIG_SOURCE:
            return None
        snapshot = await self.snapshots.newest()
        if snapshot is None or not snapshot.offers:
            return None
        self.catalog.replace(snapshot.offers, source=snapshot.source, retired=snapshot.retired, as_of=snapshot.version)
        self.versions = dict.fromkeys(snapshot.offers, snapshot.version)
        self.on_change()
        return snapshot

    async def _save(self) -> None:
        """Keep what was just installed as the last known catalog (only what the catalog said: the
        config's own offers are the config's, a snapshot read back is already saved)."""
        raw, retired = self.catalog.held()
        if self.snapshots is not None and raw:
            await self.snapshots.save(CatalogSnapshot(raw, retired, self.clock()))

    def _usable_pool(self) -> asyncpg.Pool | None:
        """The pool, unless the database is known to be down: the database watch asks it again (and
        calls for a full refresh once it answers), so a refresh does not wait on a host that is gone."""
        if self.database is not None and self.database.ok is False:
            return None
        return self.pool()

    def _database_failed(self, exc: BaseException) -> None:
        if self.database is not None:
            self.database.failed(exc)

    def _database_answered(self) -> None:
        if self.database is not None:
            self.database.answered()
