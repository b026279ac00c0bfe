"""Probing leadership: only one health worker probes at a time.

The leader holds a session-level Postgres advisory lock on a connection of its own. When the leader
dies its session ends, Postgres releases the lock, and the next worker to try takes it (each
standby tries once per round). A leader checks before each round that its lock connection is still
alive; once that connection is lost it has lost the lock too, and competes again like the others.
"""

from __future__ import annotations

import contextlib
import logging

import asyncpg

from proxy.store.database import DATABASE_ERRORS
from proxy.store.outage import DatabaseHealth, one_line

log = logging.getLogger("gatewayz.health")
LEADER_LOCK_KEY = 0x6761746577617A  # "gatewayz" in ASCII, as a bigint advisory lock key
CONNECT_TIMEOUT_S = 5.0


class Leadership:
    def __init__(self, url: str, *, key: int = LEADER_LOCK_KEY, database: DatabaseHealth | None = None) -> None:
        self.url = url
        self.key = key
        self.database = database
        self.held = False
        self._conn: asyncpg.Connection | None = None

    @property
    def backend_pid(self) -> int | None:
        """The server process of the lock connection (tests terminate it to kill a leader)."""
        return self._conn.get_server_pid() if self._conn is not None else None

    async def ensure(self) -> bool:
        """True when this worker leads for the coming round: still holds the lock, or just took it."""
        try:
            if self.held and self._conn is not None:
                await self._conn.fetchval("SELECT 1")
                return True
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S)
            self.held = bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key))
            if self.database is not None:
                self.database.answered()
            if self.held:
                log.info("took the probing leadership: this worker probes from now on")
        except DATABASE_ERRORS as exc:
            if self.held:
                log.info("lost the probing leadership (lock connection gone): %s", one_line(exc))
            if self.database is not None:
                self.database.connection_lost()  # asked at once: the database down, or only this session?
            await self._drop()
        return self.held

    async def _drop(self) -> None:
        self.held = False
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def release(self) -> None:
        """Give the lock up (closing the session releases it)."""
        self.held = False
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(*DATABASE_ERRORS):
                await conn.close(timeout=CONNECT_TIMEOUT_S)
