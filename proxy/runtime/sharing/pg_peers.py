"""Shared state through Postgres, for deployments without Redis: `NOTIFY gatewayz_state`.

The workers of one `serve --workers N`, and separate instances on one database, tell each other
about a cooldown or an opened circuit as the Redis channel does (`proxy.runtime.sharing.peers`): `publish`
only queues (no I/O on the request path), `run()` sends what is still in force as NOTIFYs through
the pool, and the instance's `PostgresListener` hands what it hears on `gatewayz_state` to
`receive`. Unlike Redis there is no catch-up: an instance that starts (or reconnects) later does not
learn the cooldowns and circuits already in force. While the database is down events wait in the
outbox (stale ones are dropped) and each instance carries on with its own state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import asyncpg

from proxy.runtime.backoff import Backoff
from proxy.runtime.sharing.exchange import StateExchange
from proxy.runtime.state import RuntimeState
from proxy.store.database import DATABASE_ERRORS
from proxy.store.notify import notify
from proxy.store.outage import DatabaseHealth
from proxy.store.wire import PG_STATE_CHANNEL, decode_state_event, encode_state_event

log = logging.getLogger("gatewayz.shared")


class PostgresPeers(StateExchange):
    def __init__(
        self,
        state: RuntimeState,
        pool: Callable[[], asyncpg.Pool | None],
        *,
        backoff: Backoff | None = None,
        database: DatabaseHealth | None = None,
    ) -> None:
        super().__init__(state)
        self.pool = pool
        self.database = database
        self.backoff = backoff or Backoff()

    def receive(self, payload: str) -> None:
        """A NOTIFY payload heard on `gatewayz_state` (called from the listener's read loop)."""
        try:
            self.apply(*decode_state_event(payload))
        except ValueError as exc:
            log.warning("ignoring a malformed state event: %s", exc)

    async def run(self) -> None:
        """Send queued events until cancelled; while the database is down, keep them and retry."""
        while True:
            await self.wait_for_events()
            events = self.fresh_events(time.time())
            pool = self.pool()
            if not events:
                continue
            try:
                if pool is None:
                    raise ConnectionError("no database connection yet")
                for event in events:
                    await notify(pool, PG_STATE_CHANNEL, encode_state_event(event, self.instance_id))
            except DATABASE_ERRORS as exc:
                self.requeue(events)
                if self.database is not None:
                    self.database.failed(exc)  # the outage's one log line; events wait in the outbox
                await asyncio.sleep(self.backoff.next())
                self._wake.set()
                continue
            self.backoff.reset()
