"""Which offer created each Responses API response, so that a stateful chain stays on its provider.

A response made with `store` lives at the provider that made it: a follow-up with
`previous_response_id`, and `GET`/`DELETE /v1/responses/{id}`, `.../cancel`, `.../input_items`,
must go there. `record` notes response id -> offer after a response is created; `lookup` finds it.
With Redis (`REDIS_URL`) every instance shares the pins (`{prefix}:response:{id}`, expiring after
`ttl_s`); this instance's own pins are also kept in process (bounded, oldest dropped first), which
is all there is without Redis. A Redis failure is logged and counted as a miss, never raised.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

from proxy.runtime.live import reader
from proxy.store.redis import REDIS_ERRORS
from proxy.store.wire import response_pin_key
from proxy.types import Offer

log = logging.getLogger("gatewayz.pins")
LOCAL_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class ResponsePin:
    provider: str  # provider slug
    provider_model_id: str
    model_id: str  # canonical model

    def encode(self) -> bytes:
        return orjson.dumps([self.provider, self.provider_model_id, self.model_id])

    @classmethod
    def decode(cls, data: bytes) -> ResponsePin | None:
        try:
            provider, provider_model_id, model_id = orjson.loads(data)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            return None
        return cls(str(provider), str(provider_model_id), str(model_id))


class ResponsePins:
    def __init__(
        self, ttl_s: float | Callable[[], float], redis: aioredis.Redis | None = None, prefix: str = "gatewayz"
    ) -> None:
        self._ttl_s = reader(ttl_s)  # a fixed value, or a getter of the live `response_pin_ttl_s`
        self.redis = redis
        self.prefix = prefix
        self._local: OrderedDict[str, tuple[ResponsePin, float]] = OrderedDict()

    @property
    def ttl_s(self) -> float:
        return self._ttl_s()

    async def record(self, response_id: str, offer: Offer) -> None:
        pin = ResponsePin(offer.provider_slug, offer.provider_model_id, offer.model_id)
        self._local[response_id] = (pin, time.monotonic() + self.ttl_s)
        if len(self._local) > LOCAL_LIMIT:
            self._local.popitem(last=False)
        if self.redis is None:
            return
        try:
            await self.redis.set(response_pin_key(self.prefix, response_id), pin.encode(), ex=max(1, int(self.ttl_s)))
        except REDIS_ERRORS as exc:
            log.warning("could not share the pin of response %s: %s", response_id[:64], exc)

    async def lookup(self, response_id: str) -> ResponsePin | None:
        found = self._local.get(response_id)
        if found is not None and found[1] > time.monotonic():
            return found[0]
        if self.redis is None:
            return None
        try:
            data = await self.redis.get(response_pin_key(self.prefix, response_id))
        except REDIS_ERRORS as exc:
            log.warning("could not read the pin of response %s: %s", response_id[:64], exc)
            return None
        return ResponsePin.decode(data) if isinstance(data, bytes) else None

    async def forget(self, response_id: str) -> None:
        """After a successful DELETE: the response is gone, so is its pin."""
        self._local.pop(response_id, None)
        if self.redis is not None:
            try:
                await self.redis.delete(response_pin_key(self.prefix, response_id))
            except REDIS_ERRORS as exc:
                log.warning("could not drop the pin of response %s: %s", response_id[:64], exc)

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
