"""The Redis client every part of the product uses, and the one tuple of errors a Redis call may raise."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from proxy.config import Secret

REDIS_ERRORS = (RedisError, OSError, TimeoutError)
HEALTH_CHECK_INTERVAL_S = 30


def redis_client(url: Secret) -> aioredis.Redis:
    """A client that fails fast (no hidden retries): the callers have their own fallbacks."""
    return aioredis.Redis.from_url(
        url.reveal(),
        socket_connect_timeout=1.0,
        socket_timeout=5.0,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry=Retry(NoBackoff(), 0),
    )
