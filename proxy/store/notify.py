"""Events through Postgres NOTIFY, for deployments without Redis (channels in `proxy.store.wire`).

`gatewayz_rankings`: the health worker announces changed statuses, `failover sync` a changed catalog.
`gatewayz_state`: proxies share cooldowns and opened circuits (`proxy.runtime.sharing.pg_peers`). Proxies
`LISTEN` on both (`proxy.runtime.sharing.pg_listen`).
"""

from __future__ import annotations

import asyncpg

from proxy.store.queries import query
from proxy.store.wire import NOTIFY_LIMIT_BYTES, PG_RANKINGS_CHANNEL, RankingEvent, encode_ranking_event

Executor = asyncpg.Pool | asyncpg.Connection


async def notify(conn: Executor, channel: str, payload: bytes) -> None:
    """One NOTIFY (sent at commit when `conn` is in a transaction); the payload is JSON under 8000 bytes."""
    await conn.execute(query("notify"), channel, payload.decode())


async def notify_rankings(conn: Executor, event: RankingEvent) -> None:
    """Announce a ranking event; too long a list of models becomes "every model"."""
    await notify(conn, PG_RANKINGS_CHANNEL, encode_ranking_event(event, limit=NOTIFY_LIMIT_BYTES))
