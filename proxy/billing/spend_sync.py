"""Sharing each budgeted key's spend between instances, in the background (`SpendLedger` is the view).

Every `budget_sync_s` (1 s by default) one exchange adds this instance's spend since the last one
to the shared counters and reads every counter of the current periods back:

- with Redis (`REDIS_URL`): one pipeline of `INCRBY {prefix}:spend:{period}:{label}:{key name}
  <nano-USD>` with `EXPIREAT` a day past the period's end, and one `MGET` of every budgeted key's
  counter;
- without Redis, with Postgres: the `key_spend` table (migration 0010), one multi-row upsert and
  one read (`add_key_spend`, `key_spend` in `proxy/store/sql/queries.sql`).

While the store is away the spend waits in the ledger and goes with the next exchange; the view
keeps counting this instance's own requests. `stop()` makes one last exchange, so that an instance
that shuts down leaves its spend behind. A push whose answer was lost (the connection dropped after
the store applied it) is pushed again: a key may then be counted above what it spent (never below).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Protocol

import asyncpg
import redis.asyncio as aioredis

from proxy.billing.budgets import period_of
from proxy.billing.spend import Slot, SpendLedger
from proxy.config import Secret
from proxy.store.database import DATABASE_ERRORS
from proxy.store.queries import query
from proxy.store.redis import REDIS_ERRORS, redis_client

log = logging.getLogger("gatewayz.budgets")
EXPIRY_PAST_PERIOD = timedelta(days=1)  # a counter outlives its period by this much (instances' clocks differ)
FINAL_EXCHANGE_TIMEOUT_S = 2.0


class SpendStore(Protocol):
    """Where the instances' spend meets: add `taken`, return the totals of `slots` (and of `taken`'s)."""

    async def exchange(self, taken: Mapping[Slot, int], slots: list[Slot]) -> dict[Slot, int]: ...

    async def aclose(self) -> None: ...


class RedisSpend:
    """The shared counters in Redis, one per key and period."""

    def __init__(self, url: Secret, prefix: str) -> None:
        self.redis: aioredis.Redis = redis_client(url)
        self.prefix = prefix

    def counter(self, slot: Slot) -> str:
        name, period = slot
        return f"{self.prefix}:spend:{period.kind}:{period.label}:{name}"

    async def exchange(self, taken: Mapping[Slot, int], slots: list[Slot]) -> dict[Slot, int]:
        pipe = self.redis.pipeline(transaction=False)
        added = list(taken.items())
        for slot, nanos in added:
            pipe.incrby(self.counter(slot), nanos)
            pipe.expireat(self.counter(slot), slot[1].end + EXPIRY_PAST_PERIOD)
        if slots:
            pipe.mget([self.counter(s) for s in slots])
        results = await pipe.execute()
        totals = {slot: int(results[2 * i]) for i, (slot, _) in enumerate(added)}
        if slots:
            totals.update({s: int(v) for s, v in zip(slots, results[-1], strict=True) if v is not None})
        return totals

    async def aclose(self) -> None:
        await self.redis.aclose()


class PostgresSpend:
    """The `key_spend` table, for instances that share a database and no Redis."""

    def __init__(self, pool: Callable[[], asyncpg.Pool | None]) -> None:
        self.pool = pool

    async def exchange(self, taken: Mapping[Slot, int], slots: list[Slot]) -> dict[Slot, int]:
        pool = self.pool()
        if pool is None:
            raise ConnectionError("no database pool yet")
        totals: dict[Slot, int] = {}
        async with pool.acquire() as conn:
            if taken:
                rows = await conn.fetch(query("add_key_spend"), *_columns(list(taken)), list(taken.values()))
                totals.update(_totals(rows))
            if slots:
                totals.update(_totals(await conn.fetch(query("key_spend"), *_columns(slots))))
        return totals

    async def aclose(self) -> None:
        pass  # the pool is the gateway's


def _columns(slots: list[Slot]) -> tuple[list[str], list[str], list[object]]:
    return [s[0] for s in slots], [s[1].kind for s in slots], [s[1].start for s in slots]


def _totals(rows: list[asyncpg.Record]) -> dict[Slot, int]:
    return {(r["key_name"], period_of(r["period"], r["period_start"])): r["spent_nano_usd"] for r in rows}


class SpendSync:
    """The background exchange of one instance's ledger with a `SpendStore` (started and stopped by
    the gateway's lifecycle)."""

    def __init__(self, ledger: SpendLedger, store: SpendStore, interval_s: Callable[[], float]) -> None:
        self.ledger = ledger
        self.store = store
        self.interval_s = interval_s
        self.failing = False

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s())
            await self.exchange()

    async def exchange(self) -> None:
        """Push this instance's spend and read everyone's; on failure keep it for the next turn."""
        if not self.ledger.budgets() and not self.ledger.pending:
            return
        taken = self.ledger.take_pending()
        try:
            totals = await self.store.exchange(taken, self.ledger.current_slots())
        except asyncio.CancelledError:  # stopped mid-exchange: the final exchange pushes it again
            self.ledger.push_failed(taken)
            raise
        except (*REDIS_ERRORS, *DATABASE_ERRORS, ConnectionError) as exc:
            self.ledger.push_failed(taken)
            if not self.failing:
                log.warning("budget spend not shared (%s: %s); counting locally until it is", type(exc).__name__, exc)
            self.failing = True
            return
        self.ledger.pushed(taken, totals)
        if self.failing:
            log.warning("budget spend shared again")
        self.failing = False

    async def stop(self) -> None:
        """One last exchange (bounded in time), then the store's connection closed."""
        try:
            async with asyncio.timeout(FINAL_EXCHANGE_TIMEOUT_S):
                await self.exchange()
        except TimeoutError:
            log.warning("budget spend: the last exchange did not finish in %.0f s", FINAL_EXCHANGE_TIMEOUT_S)
        await self.store.aclose()
