"""How the health worker tells the proxies: the shared cache of ranked offers, and ranking events.

Each round the ranked offers of every model go to the Redis hash `{prefix}:offers` (replaced as a
whole, with an expiry a few rounds long). When a status changed, a `RankingEvent` naming the
affected models is published in the same Redis transaction, so a proxy that hears it finds the new
entries already there. Without Redis (or when it is down) the event goes out as a Postgres NOTIFY.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import asyncpg

from proxy.config import Config
from proxy.store.notify import notify_rankings
from proxy.store.redis import REDIS_ERRORS, redis_client
from proxy.store.wire import (
    RankingEvent,
    encode_cached_offers,
    encode_ranking_event,
    offers_key,
    rankings_channel,
)
from proxy.types import Offer

log = logging.getLogger("gatewayz.health")
MIN_CACHE_TTL_S = 60


class RankingPublisher:
    def __init__(self, config: Config) -> None:
        self.client = redis_client(config.redis_url) if config.redis_url else None
        self.offers_key = offers_key(config.redis_prefix)
        self.channel = rankings_channel(config.redis_prefix)
        self.cache_ttl_s = max(int(3 * config.health.interval_s), MIN_CACHE_TTL_S)

    async def publish(self, pool: asyncpg.Pool, ranked: Mapping[str, Sequence[Offer]], changed: frozenset[str]) -> str:
        """Write the cache and announce `changed`; return where the event went (`redis`, `postgres`, or
        `` when there was none). Call it after the round's statuses are committed."""
        version = time.time()
        event = RankingEvent(tuple(sorted(changed)), version) if changed else None
        if self.client is not None:
            try:
                await self._to_redis(ranked, event, version)
                return "redis" if event else ""
            except REDIS_ERRORS as exc:
                log.warning("redis unreachable, announcing through Postgres NOTIFY: %s", exc)
        if event is None:
            return ""
        await notify_rankings(pool, event)
        return "postgres"

    async def _to_redis(
        self, ranked: Mapping[str, Sequence[Offer]], event: RankingEvent | None, version: float
    ) -> None:
        assert self.client is not None
        entries = {model: encode_cached_offers(offers, version) for model, offers in ranked.items()}
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.offers_key)
            if entries:
                pipe.hset(self.offers_key, mapping=entries)  # type: ignore[arg-type]
                pipe.expire(self.offers_key, self.cache_ttl_s)
            if event is not None:
                pipe.publish(self.channel, encode_ranking_event(event))
            await pipe.execute()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
