"""Events through Postgres, for deployments without Redis: `LISTEN gatewayz_rankings` (and
`gatewayz_state`, the other instances' cooldowns and circuits, when `on_state` is given).

One dedicated connection (not from the pool) listens; the health worker `NOTIFY`s in the same
transaction that changes a status, so an event is never seen before its data. When the connection
drops, `run()` reconnects with backoff and then asks for a full refresh (notifications sent while
nobody listened are lost). The request path never touches this connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import asyncpg

from proxy.runtime.backoff import Backoff
from proxy.store.database import DATABASE_ERRORS
from proxy.store.outage import DatabaseHealth
from proxy.store.wire import PG_RANKINGS_CHANNEL, PG_STATE_CHANNEL, RankingEvent, decode_ranking_event

log = logging.getLogger("gatewayz.listen")
CONNECT_TIMEOUT_S = 5.0
LIVENESS_POLL_S = 1.0


class ListenConnectionLost(ConnectionError):
    """The server ended the LISTEN session (the database went down, or only this session was ended)."""


class PostgresListener:
    def __init__(
        self,
        url: str,
        on_rankings: Callable[[RankingEvent], None],
        *,
        on_state: Callable[[str], None] | None = None,
        backoff: Backoff | None = None,
        database: DatabaseHealth | None = None,
    ) -> None:
        self.url = url
        self.database = database
        self.on_rankings = on_rankings
        self.on_state = on_state
        self.backoff = backoff or Backoff()
        self.listening = False

    async def run(self) -> None:
        """Listen until cancelled, reconnecting whenever the connection is lost."""
        listened_before = False
        while True:
            try:
                await self._session(refresh=listened_before)
            except ListenConnectionLost:
                if self.database is not None:
                    self.database.connection_lost()  # asked at once: the database down, or this session?
            except DATABASE_ERRORS as exc:
                if self.database is not None:
                    self.database.failed(exc)  # the outage's one log line; the TTL refresh carries on
            except Exception:  # this loop must survive; the failure is logged with its traceback
                log.exception("listening for ranking events failed; reconnecting")
            listened_before = listened_before or self.listening
            self.listening = False
            await asyncio.sleep(self.backoff.next())

    async def _session(self, *, refresh: bool) -> None:
        conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S)
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(PG_RANKINGS_CHANNEL, self._notified)
            if self.on_state is not None:
                await conn.add_listener(PG_STATE_CHANNEL, self._state_notified)
            self.listening = True
            self.backoff.reset()
            if self.database is not None:
                self.database.answered()
            if refresh:
                self.on_rankings(RankingEvent(None, time.time()))
            while not conn.is_closed() and not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), LIVENESS_POLL_S)
                except TimeoutError:
                    continue
            raise ListenConnectionLost("the server closed the LISTEN connection")
        finally:
            conn.terminate()

    def _notified(self, conn: object, pid: int, channel: str, payload: object) -> None:
        try:
            self.on_rankings(decode_ranking_event(str(payload)))
        except ValueError as exc:
            log.warning("ignoring a malformed ranking event: %s", exc)

    def _state_notified(self, conn: object, pid: int, channel: str, payload: object) -> None:
        if self.on_state is not None:
            self.on_state(str(payload))
