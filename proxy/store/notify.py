"""Announcing a ranking event through Postgres: `NOTIFY gatewayz_rankings` (see `proxy.store.wire`).

The health worker sends one when statuses change, `failover sync` when the catalog changed. Proxies
without Redis `LISTEN` on the channel (`proxy.runtime.pg_listen`).
"""

from __future__ import annotations

import asyncpg

from proxy.store.queries import query
from proxy.store.wire import NOTIFY_LIMIT_BYTES, PG_RANKINGS_CHANNEL, RankingEvent, encode_ranking_event


async def notify_rankings(pool: asyncpg.Pool | asyncpg.Connection, event: RankingEvent) -> None:
    """Send the event (at commit, when called inside a transaction); too long a list means every model."""
    payload = encode_ranking_event(event, limit=NOTIFY_LIMIT_BYTES)
    await pool.execute(query("notify_rankings"), PG_RANKINGS_CHANNEL, payload.decode())
