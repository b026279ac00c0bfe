"""The health worker's Postgres edge: what it reads before a round and writes after it.

Every function takes a connection (or pool) and runs named queries from `health/sql/queries.sql`
(and the shared `add_health_counts` from `proxy.store.health_counts`); the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from health.derive import OfferInput, RoundDecision
from health.probe import ProbeResult
from health.queries import query
from proxy.store.health_counts import Connection, CountsRow, add_health_counts
from proxy.types import Health, PassiveCounts


async def load_probe_offers(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Every active offer: `offer_id`, `model_id`, `provider_slug`, `provider_model_id`."""
    return list(await pool.fetch(query("probe_targets")))


def probe_counts(result: ProbeResult) -> CountsRow:
    """A probe as a batch of one outcome, for the shared atomic-increment statement."""
    ok = result.ok
    counts = PassiveCounts(
        successes=int(ok),
        errors=int(not ok),
        latency_ms_total=result.elapsed_ms if ok else 0.0,
        last_status="ok" if ok else result.result,
        last_error="" if ok else (result.error or result.result),
        trailing_successes=int(ok),
        trailing_errors=int(not ok),
    )
    return CountsRow(result.target.key, counts)


async def record_probes(conn: Connection, results: Sequence[ProbeResult]) -> None:
    await add_health_counts(conn, [probe_counts(r) for r in results])


def _input(row: asyncpg.Record) -> OfferInput:
    return OfferInput(
        offer_id=row["offer_id"],
        model_id=row["model_id"],
        provider_slug=row["provider_slug"],
        provider_model_id=row["provider_model_id"],
        health=Health(row["health_status"]),
        success_count=row["success_count"] or 0,
        error_count=row["error_count"] or 0,
        consecutive_failures=row["consecutive_failures"] or 0,
        consecutive_successes=row["consecutive_successes"] or 0,
        latency_ms=row["average_response_time_ms"],
        observed=row["last_status"] is not None,
    )


async def load_health_inputs(conn: Connection) -> list[OfferInput]:
    return [_input(row) for row in await conn.fetch(query("health_inputs"))]


async def load_provider_health(conn: Connection) -> dict[str, Health]:
    return {row["slug"]: Health(row["health_status"]) for row in await conn.fetch(query("provider_health"))}


async def write_decision(conn: Connection, decision: RoundDecision) -> None:
    """The offers' statuses, latencies and success rates, and the providers' roll-ups."""
    offers = decision.offers
    await conn.execute(
        query("write_offer_health"),
        [d.offer.offer_id for d in offers],
        [d.health.value for d in offers],
        [d.offer.latency_ms for d in offers],
        [d.success_rate for d in offers],
    )
    slugs = sorted(decision.providers)
    await conn.execute(
        query("write_provider_health"),
        slugs,
        [decision.providers[s][0].value for s in slugs],
        [decision.providers[s][1] for s in slugs],
    )


async def add_probe_history(conn: Connection, results: Sequence[ProbeResult], decision: RoundDecision) -> None:
    """One `probe` history row per result, with the status the offer was given after it."""
    if not results:
        return
    health = decision.by_offer()
    await conn.execute(
        query("add_probe_history"),
        [r.target.offer_id for r in results],
        [health.get(r.target.offer_id, Health.UNKNOWN).value for r in results],
        [r.elapsed_ms for r in results],
        [r.http_status for r in results],
        [r.error for r in results],
    )


async def prune_history(pool: asyncpg.Pool, retention_days: float) -> int:
    """Delete history older than the retention period; return how many rows went."""
    status = await pool.execute(query("prune_history"), retention_days * 86_400.0)
    return int(status.rsplit(" ", 1)[-1]) if status.startswith("DELETE") else 0

