"""Shared state through Redis: what one proxy instance learns, every instance learns at once.

- Outgoing: `publish(event)` is `RuntimeState`'s callback when this instance sets a cooldown or opens
  a circuit. It only appends to a bounded outbox (no I/O on the request path); a background task
  sends the outbox as one pipeline of `PUBLISH`es on `{prefix}:events:state`.
  Each event is also kept in the hash `{prefix}:state` (the latest per offer and kind), so that an
  instance that (re)connects catches up on the cooldowns and circuits still in force.
- Incoming: one subscription to `{prefix}:events:state` (other instances' events, applied to the
  local `RuntimeState`) and `{prefix}:events:rankings` (the health worker's, handed to `on_rankings`);
  right after subscribing, one read of `{prefix}:state`.
- The shared cache of ranked offers (`{prefix}:offers`, written by the worker) is read through
  `read_offers`, by the catalog refresher only.

When Redis goes away the instance carries on with its in-process state: `status` turns
`unreachable`, events wait in the outbox (stale ones are dropped), and `run()` reconnects with
backoff. After a reconnect it asks for a full catalog refresh, since ranking events may have been missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from proxy.config import Secret
from proxy.runtime.backoff import Backoff
from proxy.runtime.sharing.exchange import StateExchange
from proxy.runtime.state import RuntimeState
from proxy.store.redis import REDIS_ERRORS, redis_client
from proxy.store.wire import (
    RankingEvent,
    decode_cached_offers,
    decode_ranking_event,
    decode_state_event,
    encode_state_event,
    offers_key,
    rankings_channel,
    state_channel,
    state_field,
    state_key,
)
from proxy.types import Offer

log = logging.getLogger("gatewayz.shared")
READ_TIMEOUT_S = 1.0
STATE_TTL_S = 3600  # the state hash outlives its last write by this long; readers skip stale entries

CachedOffers = dict[str, tuple[list[Offer], float]]


class SharedState(StateExchange):
    def __init__(
        self,
        url: Secret,
        prefix: str,
        state: RuntimeState,
        *,
        on_rankings: Callable[[RankingEvent], None],
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(state)
        self.url = url
        self.on_rankings = on_rankings
        self.state_channel = state_channel(prefix)
        self.rankings_channel = rankings_channel(prefix)
        self.offers_key = offers_key(prefix)
        self.state_key = state_key(prefix)
        self.backoff = backoff or Backoff()
        self.status = "unreachable"  # ok | unreachable
        self.client: aioredis.Redis | None = None

    async def run(self) -> None:
        """Stay subscribed; on any Redis failure, back off and reconnect. Runs until cancelled."""
        connected_before = warned = False
        while True:
            try:
                await self._session(refresh=connected_before)
            except REDIS_ERRORS as exc:
                if self.status == "ok" or not warned:
                    log.warning("redis unreachable, using in-process state until it is back: %s", exc)
                    warned = True
            except Exception:  # this loop must survive; the failure is logged with its traceback
                log.exception("shared state over redis failed; reconnecting")
            connected_before = connected_before or self.status == "ok"
            self.status = "unreachable"
            await asyncio.sleep(self.backoff.next())

    async def _session(self, *, refresh: bool) -> None:
        client = redis_client(self.url)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        tasks: list[asyncio.Task[None]] = []
        try:
            await pubsub.subscribe(self.state_channel, self.rankings_channel)
            await self._catch_up(client)
            self.client, self.status = client, "ok"
            self.backoff.reset()
            if refresh:
                log.warning("redis is back; refreshing the catalog for events missed meanwhile")
                self.on_rankings(RankingEvent(None, time.time()))
            tasks = [asyncio.ensure_future(self._receive(pubsub)), asyncio.ensure_future(self._send(client))]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            self.client = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(*REDIS_ERRORS):
                # redis 5 leaves PubSub.aclose untyped, redis 8 types it: a typed name serves both
                close_pubsub: Callable[[], Awaitable[None]] = pubsub.aclose
                await close_pubsub()
            with contextlib.suppress(*REDIS_ERRORS):
                await client.aclose()

    async def _receive(self, pubsub: Any) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=READ_TIMEOUT_S)
            if message is not None and message.get("type") == "message":
                self._dispatch(message["channel"], message["data"])

    def _dispatch(self, channel: bytes | str, data: bytes) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        try:
            if name == self.rankings_channel:
                self.on_rankings(decode_ranking_event(data))
            elif name == self.state_channel:
                self.apply(*decode_state_event(data))
        except ValueError as exc:
            log.warning("ignoring a malformed event on %s: %s", name, exc)

    async def _catch_up(self, client: aioredis.Redis) -> None:
        """Apply the other instances' cooldowns and circuits still in force (missed while away)."""
        entries: dict[Any, Any] = await client.hgetall(self.state_key)
        now = time.time()
        for data in entries.values():
            try:
                event, origin = decode_state_event(data)
            except ValueError as exc:
                log.warning("ignoring a malformed entry of %s: %s", self.state_key, exc)
                continue
            if self.horizon(event) > now:
                self.apply(event, origin)

    async def _send(self, client: aioredis.Redis) -> None:
        while True:
            await self.wait_for_events()
            events = self.fresh_events(time.time())
            if not events:
                continue
            try:
                async with client.pipeline(transaction=False) as pipe:
                    for event in events:
                        payload = encode_state_event(event, self.instance_id)
                        pipe.hset(self.state_key, state_field(event), payload)
                        pipe.publish(self.state_channel, payload)
                    pipe.expire(self.state_key, STATE_TTL_S)
                    await pipe.execute()
            except REDIS_ERRORS:
                self.requeue(events)
                raise

    async def read_offers(self, models: Sequence[str] | None) -> CachedOffers:
        """The shared cache's entries for `models` (all when None); raises `RedisError` when unreachable."""
        client = self.client
        if client is None:
            raise RedisError("redis is unreachable")
        if models is None:
            raw: dict[Any, Any] = await client.hgetall(self.offers_key)
        else:
            values = await client.hmget(self.offers_key, list(models))
            raw = dict(zip(models, values, strict=True))
        found: CachedOffers = {}
        for name, data in raw.items():
            if data is None:
                continue
            model = name.decode() if isinstance(name, bytes) else name
            try:
                found[model] = decode_cached_offers(data)
            except ValueError as exc:
                log.warning("ignoring a malformed cache entry for %s: %s", model, exc)
        return found
