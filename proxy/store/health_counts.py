"""Health counts: batches of outcomes per offer, added to `model_health_tracking` in one statement.

The proxies' passive flush and the worker's probes both write through `add_health_counts`: every
counter moves by an atomic increment on the row itself (`success_count = success_count + $n`), so
any number of writers can add at once and none reads a value to write it back. `merge_counts` adds
two batches of one offer in time order, keeping the run of outcomes the later one ends with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from proxy.store.queries import query
from proxy.types import OfferKey, PassiveCounts

Connection = asyncpg.Connection | PoolConnectionProxy


@dataclass(frozen=True, slots=True)
class CountsRow:
    """One offer's outcomes in one batch; `circuit_state` / `cooldown_until` None keeps the stored one."""

    key: OfferKey
    counts: PassiveCounts
    circuit_state: str | None = None
    cooldown_until: float | None = None  # wall clock seconds


def merge_counts(earlier: PassiveCounts, later: PassiveCounts) -> PassiveCounts:
    """Both batches as one, `later` having happened after `earlier`."""
    if later.errors == 0:
        successes = earlier.trailing_successes + later.successes
        errors = earlier.trailing_errors if later.successes == 0 else 0
    elif later.successes == 0:
        successes = earlier.trailing_successes if later.errors == 0 else 0
        errors = earlier.trailing_errors + later.errors
    else:
        successes, errors = later.trailing_successes, later.trailing_errors
    return PassiveCounts(
        successes=earlier.successes + later.successes,
        errors=earlier.errors + later.errors,
        latency_ms_total=earlier.latency_ms_total + later.latency_ms_total,
        last_status=later.last_status or earlier.last_status,
        last_error=later.last_error or earlier.last_error,
        trailing_successes=successes,
        trailing_errors=errors,
    )


def mean_latency_ms(counts: PassiveCounts) -> float | None:
    return counts.latency_ms_total / counts.successes if counts.successes else None


def _timestamp(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


def _columns(rows: Sequence[CountsRow]) -> list[list[object]]:
    return [
        [r.key[0] for r in rows],
        [r.key[1] for r in rows],
        [r.counts.successes for r in rows],
        [r.counts.errors for r in rows],
        [r.counts.trailing_successes for r in rows],
        [r.counts.trailing_errors for r in rows],
        [mean_latency_ms(r.counts) for r in rows],
        [r.counts.last_error or None for r in rows],
        [r.circuit_state for r in rows],
        [_timestamp(r.cooldown_until) for r in rows],
    ]


async def add_health_counts(conn: Connection, rows: Sequence[CountsRow]) -> list[asyncpg.Record]:
    """Add one batch (run it inside the caller's transaction); return the updated tracking rows.

    Offers the catalog does not hold (static offers never synced) are skipped.
    """
    if not rows:
        return []
    await conn.execute(query("ensure_tracking_for_keys"), [r.key[0] for r in rows], [r.key[1] for r in rows])
    return list(await conn.fetch(query("add_health_counts"), *_columns(rows)))
