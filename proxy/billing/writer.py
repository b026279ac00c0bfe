"""The usage writer: every request's usage record to Postgres in batches, never on the request path.

    request ends ──add()──▶ pending (memory) ──every flush_s, or batch_size──▶ COPY to Postgres
                                                  └── Postgres down ──▶ spool file ──back──▶ Postgres

- `add(request_id, make)` is what the accounting step calls once per request: a list append, no I/O,
  nothing awaited; `make()` builds the record, and is called by the flusher, off the request path
  (`python -m bench.instructions --records on`). A batch that reaches `[usage] batch_size` wakes the
  flusher at once.
- `run()` (started and cancelled by the gateway's lifecycle) flushes every `[usage] flush_s`;
  `flush()` is also called on SIGHUP (a reload) and at shutdown (SIGTERM).
- A flush writes the spool first (oldest file first, in order), then the new batch, each as one
  transaction (`proxy.billing.usage_db.write_usage`: `ON CONFLICT (request_id) DO NOTHING`), so a
  spool written again after a failure counts nothing twice; a spool file is removed only once its
  transaction committed. While Postgres is down (`DatabaseHealth` says so, or the write fails, which
  is reported to it) the batch is appended to the spool instead; past the spool's bound
  (`spool_max_mb`) a batch is dropped, counted and logged.
- `find(request_id)` looks in the pending batch, the batch being written and the spool, for a record
  asked for before it reached the database (`GET /v1/generation`).

What a `kill -9` loses: the records in memory, those of requests that ended since the last flush
began: at most one flush interval's (`flush_s`) plus the time the last write took (measured:
`tests/e2e/test_usage_records.py::test_kill_9_loses_at_most_one_flush_interval`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import asyncpg

from proxy.billing.spool import Spool
from proxy.billing.usage_db import delete_old_usage, write_usage
from proxy.billing.usage_record import UsageRecord
from proxy.config import UsageSettings
from proxy.runtime.metrics import Metrics
from proxy.store.database import DATABASE_ERRORS
from proxy.store.outage import DatabaseHealth

log = logging.getLogger("gatewayz.usage")
MB = 1024 * 1024
WRITE_TIMEOUT_S = 10.0  # one batch's write that hangs longer is a database that is not there: spool the batch


class UsageWriter:
    def __init__(
        self,
        settings: Callable[[], UsageSettings],
        pool: Callable[[], asyncpg.Pool | None],
        spool: Spool,
        metrics: Metrics,
        database: DatabaseHealth | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self.spool = spool
        self.metrics = metrics
        self.database = database
        self._pending: list[tuple[str, Callable[[], UsageRecord]]] = []  # (request id, its record's builder)
        self._writing: list[UsageRecord] = []
        self._full = asyncio.Event()
        self._lock = asyncio.Lock()
        self._dropping = False  # logged once per run of dropped batches

    # --- the request path ------------------------------------------------------------------------

    def add(self, request_id: str, make: Callable[[], UsageRecord]) -> None:
        """Queue one request's record, built later by `make()` (no I/O now); wakes the flusher when a
        batch is full."""
        settings = self._settings()
        if settings.enabled is False:
            return
        self._pending.append((request_id, make))
        if len(self._pending) >= settings.batch_size:
            self._full.set()

    # --- reading ---------------------------------------------------------------------------------

    async def find(self, request_id: str) -> UsageRecord | None:
        """The record of `request_id` not yet in the database (pending, being written, spooled), else
        None; the spool files are read in a thread."""
        for ident, make in reversed(self._pending):
            if ident == request_id:
                return make()
        for record in reversed(self._writing):
            if record.request_id == request_id:
                return record
        return await asyncio.to_thread(self.spool.find, request_id)

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._writing)

    # --- the background work ---------------------------------------------------------------------

    async def run(self) -> None:
        """Flush every `flush_s`, or as soon as a batch is full, until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings().flush_s):
                    await self._full.wait()
            await self.flush()

    async def flush(self) -> None:
        """Write the spool (when the database answers) and then every pending record; on a database
        failure the pending records go to the spool. Never raises a database or file error."""
        async with self._lock:
            self._full.clear()
            queued, self._pending = self._pending, []
            batch = self._writing = self._built(queued)
            try:
                await self._write(batch)
            except asyncio.CancelledError:  # cut short (shutdown): the batch waits for the last flush
                self._pending = [(r.request_id, _made(r)) for r in batch] + self._pending
                raise
            finally:
                self._writing = []

    def _built(self, queued: list[tuple[str, Callable[[], UsageRecord]]]) -> list[UsageRecord]:
        records = []
        for request_id, make in queued:
            try:
                records.append(make())
            except Exception:  # a bug in one record must not lose the batch: logged with its id, counted
                log.exception("usage record of request %s could not be built", request_id)
                self._count("dropped", 1)
        return records

    async def _write(self, batch: list[UsageRecord]) -> None:
        pool = self._pool()
        if pool is None or (self.database is not None and self.database.ok is False):
            self._to_spool(batch)
            return
        try:
            await self._drain_spool(pool)
            inserted = await _write_within(pool, batch)
        except DATABASE_ERRORS as exc:
            if self.database is not None:
                self.database.failed(exc)
            self._to_spool(batch)
            return
        if self.database is not None:
            self.database.answered()
        self._count("written", inserted)
        self._count("duplicate", len(batch) - inserted)

    async def _drain_spool(self, pool: asyncpg.Pool) -> None:
        for path in self.spool.files():
            records = await asyncio.to_thread(Spool.read, path)
            inserted = 0
            for start in range(0, len(records), self._settings().batch_size):
                inserted += await _write_within(pool, records[start : start + self._settings().batch_size])
            Spool.remove(path)
            self._count("written", inserted)
            self._count("duplicate", len(records) - inserted)
            if records:
                log.info("usage spool: %d records written to the database (%d already there)",
                            inserted, len(records) - inserted)  # fmt: skip

    def _to_spool(self, batch: list[UsageRecord]) -> None:
        if not batch:
            return
        self.spool.max_bytes = int(self._settings().spool_max_mb * MB)
        try:
            dropped = self.spool.append(batch)
        except OSError as exc:
            log.error("usage spool %s cannot be written (%s): %d records dropped", self.spool.path, exc, len(batch))
            dropped = len(batch)
        self._count("spooled", len(batch) - dropped)
        self._count("dropped", dropped)
        if dropped and not self._dropping:
            log.error("usage spool %s is full (spool_max_mb): usage records are being dropped", self.spool.path)
        self._dropping = dropped > 0

    def _count(self, result: str, count: int) -> None:
        if count:
            self.metrics.count_usage_records(result, count)

    async def close(self, timeout_s: float) -> None:
        """The last flush at shutdown: what Postgres does not take within `timeout_s` is spooled."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.flush()
        except TimeoutError:
            self._to_spool(self._built(self._pending))
            self._pending = []

    async def keep_retention(self) -> None:
        """Delete records past `retention_days`, every `retention_check_s`, until cancelled."""
        while True:
            pool = self._pool()
            if pool is not None and (self.database is None or self.database.ok):
                started = time.monotonic()
                try:
                    deleted = await delete_old_usage(pool, self._settings().retention_days)
                except DATABASE_ERRORS as exc:
                    if self.database is not None:
                        self.database.failed(exc)
                else:
                    if deleted:
                        log.info("usage retention: %d records deleted in %.1f s", deleted, time.monotonic() - started)
            await asyncio.sleep(self._settings().retention_check_s)


def _made(record: UsageRecord) -> Callable[[], UsageRecord]:
    return lambda: record


async def _write_within(pool: asyncpg.Pool, records: list[UsageRecord]) -> int:
    """One batch's transaction, within `WRITE_TIMEOUT_S` (a long spool is written batch by batch, each
    with its own time: its length never makes a working database look unreachable)."""
    async with asyncio.timeout(WRITE_TIMEOUT_S):
        return await write_usage(pool, records)
