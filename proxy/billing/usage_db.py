"""Usage records in Postgres: the batch write, one record, spend over a time range, retention.

SQL is in `proxy/store/sql/queries.sql` (`usage_*`). A batch is one transaction: COPY into this
session's staging table, then `INSERT ... SELECT ... ON CONFLICT (request_id) DO NOTHING`, so a batch
written twice (a spool replayed after a failure whose commit did reach the server) counts once.
Every function raises what asyncpg raises (`proxy.store.database.DATABASE_ERRORS` when it is away).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from proxy.billing.cost import cost_text
from proxy.billing.usage_record import COLUMNS, UsageRecord
from proxy.store.queries import query

GROUPS = ("key", "model", "provider", "day")
STAGING = "usage_staging"
RETENTION_BATCH = 5000


async def write_usage(pool: asyncpg.Pool, records: Sequence[UsageRecord]) -> int:
    """Write `records` in one transaction; the number inserted (those already there are skipped)."""
    if not records:
        return 0
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(query("usage_staging"))
        await conn.copy_records_to_table(STAGING, records=records, columns=COLUMNS)
        status = await conn.execute(query("usage_insert_staged"))
    return int(status.rsplit(" ", 1)[-1])


async def fetch_usage(pool: asyncpg.Pool, request_id: str) -> UsageRecord | None:
    row = await pool.fetchrow(query("usage_record"), request_id)
    return None if row is None else UsageRecord(**{name: row[name] for name in COLUMNS})


async def delete_old_usage(pool: asyncpg.Pool, days: int, batch: int = RETENTION_BATCH) -> int:
    """Delete the records older than `days`, `batch` rows per statement (no long lock); how many."""
    deleted = 0
    while True:
        status = await pool.execute(query("usage_delete_old"), days, batch)
        count = int(status.rsplit(" ", 1)[-1])
        deleted += count
        if count < batch:
            return deleted


def check_groups(group_by: Sequence[str]) -> tuple[str, str]:
    """`group_by` as the spend query takes it (two names, '' for none); `ValueError` naming the
    accepted names when a name is unknown or more than two are given."""
    names = [g.strip() for g in group_by if g.strip()]
    unknown = [g for g in names if g not in GROUPS]
    if unknown or len(names) > 2:
        raise ValueError(f"group_by takes up to two of {', '.join(GROUPS)}; got {','.join(names)!r}")
    padded = [*names, "", ""]
    return padded[0], padded[1]


async def spend(
    pool: asyncpg.Pool,
    since: datetime,
    until: datetime,
    group_by: Sequence[str] = ("key",),
    key_name: str | None = None,
) -> list[dict[str, Any]]:
    """Requests, cost (USD, exact decimal) and tokens over [since, until), one row per group: each row
    has the group names as keys (`{"key": ..., "day": ...}`) then `requests`, `served`,
    `unpriced_requests`, `cost_usd` (Decimal), `prompt_tokens`, `cached_prompt_tokens`,
    `completion_tokens`, `reasoning_tokens`. `ValueError` for an unknown group name."""
    first, second = check_groups(group_by)
    rows = await pool.fetch(query("usage_spend"), since, until, first, second, key_name)
    out = []
    for row in rows:
        entry: dict[str, Any] = {}
        if first:
            entry[first] = row["group_1"]
        if second:
            entry[second] = row["group_2"]
        for name in ("requests", "served", "unpriced_requests", "prompt_tokens", "cached_prompt_tokens",
                     "completion_tokens", "reasoning_tokens"):  # fmt: skip
            entry[name] = int(row[name])
        entry["cost_usd"] = Decimal(row["cost_usd"])
        out.append(entry)
    return out


def parse_time(value: str | None, default: datetime, param: str) -> datetime:
    """An ISO 8601 time (a date alone is its midnight; no offset: UTC); `ValueError` naming `param`."""
    if value is None or not value.strip():
        return default
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        example = "e.g. 2026-12-01 or 2026-12-01T10:00:00Z"
        raise ValueError(f"{param}: not an ISO 8601 time: {value[:64]!r} ({example})") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def spend_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spend rows as JSON takes them: each cost as exact decimal text."""
    return [{**row, "cost_usd": cost_text(row["cost_usd"])} for row in rows]


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The sums of spend rows (cost as decimal text)."""
    names = ("requests", "served", "unpriced_requests", "prompt_tokens", "cached_prompt_tokens",
             "completion_tokens", "reasoning_tokens")  # fmt: skip
    out: dict[str, Any] = {name: sum(row[name] for row in rows) for name in names}
    out["cost_usd"] = cost_text(sum((row["cost_usd"] for row in rows), Decimal(0)))
    return out
