"""The passive-health flusher: what this proxy saw of each offer, written to Postgres in batches.

Every `health_flush_s` it drains `RuntimeState`'s counts and writes them in one transaction: one
atomic-increment statement for every offer seen (`proxy.store.health_counts`), the offers whose circuit
or cooldown changed, a `source = traffic` history row per offer at most once per
`traffic_history_interval_s`, and the learned time to first output (`proxy.runtime.first_output`) of
every offer that learned something since the last write, for `failover explain`. Nothing is written
when nothing happened, and nothing on the request path. When the write fails (Postgres down) the
counts are kept, merged with the next ones, and written once it is back: one pending entry per
offer, so memory stays bounded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import orjson

from proxy.config import HealthSettings
from proxy.runtime.first_output import learned_json
from proxy.runtime.state import RuntimeState
from proxy.store.database import DATABASE_ERRORS
from proxy.store.health_counts import CountsRow, add_health_counts, mean_latency_ms, merge_counts
from proxy.store.outage import DatabaseHealth
from proxy.store.queries import query
from proxy.types import CircuitState, Health, OfferKey, PassiveCounts

log = logging.getLogger("gatewayz.flush")

CircuitMark = tuple[str, float]  # (circuit state, cooldown until) as last written


def traffic_health(counts: PassiveCounts, health: HealthSettings) -> Health:
    """The status a traffic history row records: from the share of failed requests it sums up."""
    total = counts.successes + counts.errors
    ratio = counts.errors / total if total else 0.0
    return health.health_for_error_ratio(ratio) or Health.HEALTHY


def _http_status(code: str) -> int | None:
    return int(code) if code.isdigit() and 100 <= int(code) <= 599 else None


@dataclass(frozen=True, slots=True)
class FlushBatch:
    counts: dict[OfferKey, PassiveCounts]
    circuits: dict[OfferKey, CircuitMark]
    history: dict[OfferKey, PassiveCounts]
    first_output: dict[OfferKey, tuple[int, str]]  # (samples ever recorded, the JSON to write)


class HealthFlusher:
    def __init__(
        self,
        state: RuntimeState,
        pool: Callable[[], asyncpg.Pool | None],
        *,
        clock: Callable[[], float] = time.time,
        database: DatabaseHealth | None = None,
    ) -> None:
        self.state = state
        self.database = database
        self._first_output_at: dict[OfferKey, int] = {}  # samples recorded when last written
        self.pool = pool
        self.clock = clock
        self.pending: dict[OfferKey, PassiveCounts] = {}
        self._history: dict[OfferKey, PassiveCounts] = {}
        self._history_at: dict[OfferKey, float] = {}
        self._circuits: dict[OfferKey, CircuitMark] = {}
        self.failing = False
        self.flushes = 0  # successful writes, for tests and logs

    def _gather(self, now: float) -> FlushBatch:
        for key, counts in self.state.drain().items():
            before = self.pending.get(key)
            self.pending[key] = counts if before is None else merge_counts(before, counts)
            history = self._history.get(key)
            self._history[key] = counts if history is None else merge_counts(history, counts)
        due = {
            key: counts
            for key, counts in self._history.items()
            if now - self._history_at.get(key, 0.0) >= self.state.health.traffic_history_interval_s
        }
        return FlushBatch(dict(self.pending), self._circuit_changes(now), due, self._first_output_changes())

    def _first_output_changes(self) -> dict[OfferKey, tuple[int, str]]:
        times = self.state.first_output
        changed: dict[OfferKey, tuple[int, str]] = {}
        for key, recorded in times.recorded().items():
            if recorded != self._first_output_at.get(key):
                learned = learned_json(times, key, self.state.settings.first_byte_timeout_s)
                changed[key] = (recorded, orjson.dumps(learned).decode())
        return changed

    def _circuit_changes(self, now: float) -> dict[OfferKey, CircuitMark]:
        changed: dict[OfferKey, CircuitMark] = {}
        for key, offer in self.state.offers.items():
            mark = (self.state.circuit(key, now).value, offer.cooldown_until)
            if mark != self._circuits.get(key, (CircuitState.CLOSED.value, 0.0)):
                changed[key] = mark
        return changed

    async def flush(self) -> int:
        """Write what is pending; return the number of offers written (0: nothing to do, or no pool).

        Raises the database's error after keeping the counts for the next try.
        """
        now = self.clock()
        batch = self._gather(now)
        pool = self.pool()
        if pool is None or not (batch.counts or batch.circuits):
            return 0
        try:
            async with pool.acquire() as conn, conn.transaction():
                await add_health_counts(conn, _rows(batch))
                if batch.history:
                    history = _history_columns(batch.history, self.state.health)
                    await conn.execute(query("add_traffic_history"), *history)
                if batch.first_output:
                    keys = sorted(batch.first_output)
                    columns = [[k[0] for k in keys], [k[1] for k in keys], [batch.first_output[k][1] for k in keys]]
                    await conn.execute(query("set_first_output"), *columns)
        except DATABASE_ERRORS as exc:
            if self.database is not None:
                self.database.failed(exc)  # the outage's one log line; the counts wait for the next try
            self.failing = True
            raise
        if self.database is not None:
            self.database.answered()
        self._written(batch, now)
        return len(batch.counts) + len(batch.circuits.keys() - batch.counts.keys())

    def _written(self, batch: FlushBatch, now: float) -> None:
        for key in batch.counts:
            self.pending.pop(key, None)
        for key in batch.history:
            self._history.pop(key, None)
            self._history_at[key] = now
        self._circuits.update(batch.circuits)
        self._first_output_at.update({key: recorded for key, (recorded, _) in batch.first_output.items()})
        self.failing = False
        self.flushes += 1


def _rows(batch: FlushBatch) -> list[CountsRow]:
    rows = []
    for key in batch.counts.keys() | batch.circuits.keys():
        mark = batch.circuits.get(key)
        rows.append(
            CountsRow(
                key,
                batch.counts.get(key, PassiveCounts()),
                circuit_state=mark[0] if mark else None,
                cooldown_until=mark[1] if mark else None,
            )
        )
    return sorted(rows, key=lambda r: r.key)


def _history_columns(history: dict[OfferKey, PassiveCounts], health: HealthSettings) -> list[list[object]]:
    keys = sorted(history)
    return [
        [k[0] for k in keys],
        [k[1] for k in keys],
        [traffic_health(history[k], health).value for k in keys],
        [mean_latency_ms(history[k]) for k in keys],
        [_http_status(history[k].last_error) if history[k].trailing_errors else None for k in keys],
        [history[k].last_error or None for k in keys],
    ]
