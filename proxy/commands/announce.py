"""Telling every running proxy that the catalog changed, right after `failover sync` wrote it.

The event is a `RankingEvent` for every model, on the channels the proxies' refresh already listens
to: a Postgres NOTIFY (proxies without Redis) and, when `REDIS_URL` is set, Redis pub/sub. Each proxy
then reloads its catalog from Postgres, so priorities, activity, pinned offers and aliases take
effect everywhere within a second of `sync`. A channel that cannot be reached is reported, not
raised: the proxies' `catalog_ttl_s` refresh catches up.
"""

from __future__ import annotations

import time

import asyncpg

from proxy.config import Config
from proxy.store.database import DATABASE_ERRORS
from proxy.store.notify import notify_rankings
from proxy.store.redis import REDIS_ERRORS, redis_client
from proxy.store.wire import RankingEvent, encode_ranking_event, rankings_channel


async def announce_catalog_change(pool: asyncpg.Pool, config: Config) -> str:
    """Announce a change of every model; return one line saying where the event went."""
    event = RankingEvent(None, time.time())
    sent, failed = [], []
    try:
        await notify_rankings(pool, event)
        sent.append("postgres")
    except DATABASE_ERRORS as exc:
        failed.append(f"postgres ({exc})")
    if config.redis_url:
        client = redis_client(config.redis_url)
        try:
            await client.publish(rankings_channel(config.redis_prefix), encode_ranking_event(event))
            sent.append("redis")
        except REDIS_ERRORS as exc:
            failed.append(f"redis ({exc})")
        finally:
            await client.aclose()
    line = f"announced to running proxies through {' and '.join(sent) or 'no channel'}"
    if failed:
        line += f"; not through {', '.join(failed)}: proxies catch up within catalog_ttl_s"
    return line
