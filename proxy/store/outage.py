"""Whether this process's database answers now, and the one log line at each end of an outage.

Every part of a long-running process that talks to Postgres (the catalog refresh, the health flush,
LISTEN, shared state, the health worker's rounds) reports here: `failed(exc)` after a database error,
`answered()` after a query that worked; the pool reports a connection the server closed
(`proxy.store.database.create_pool(on_lost=...)`) the moment it happens, and `watch_database` then
asks the database at once whether it is down (a restart or a crash) or only that session ended,
and keeps asking, backing off, until it answers. So `/readyz` says what is true now, and an outage
is one WARNING line when it starts ("database unreachable: ...") and one when it ends ("database
reachable again after 31.2 s"), never a line (or a traceback) per retry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg

from proxy.store.database import DATABASE_ERRORS, redact_url
from proxy.store.queries import query

REASON_CHARS = 200
PROBE_TIMEOUT_S = 2.0
RETRY_S, RETRY_MAX_S = 0.2, 5.0  # between probes while the database is down: doubling up to the cap


def one_line(exc: BaseException) -> str:
    """An exception as one short line for a log: its class and the first line of its message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = redact_url(text) if "://" in text else text
    return f"{type(exc).__name__}: {text}"[:REASON_CHARS] if text else type(exc).__name__


# connection exceptions, shutting down or crashed, too many connections, no such database (not made yet)
OUTAGE_SQLSTATES = ("08", "57P", "53300", "3D000")


def is_outage(exc: BaseException) -> bool:
    """Whether an error means the server is away (unreachable, restarting, refusing sessions), rather
    than an answer to the query (a missing table, a constraint)."""
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "").startswith(OUTAGE_SQLSTATES)
    return isinstance(exc, DATABASE_ERRORS)


class DatabaseHealth:
    """`ok` is None until the first contact, then True or False. `meanwhile` ends the outage line with
    what the process does until the database is back."""

    def __init__(self, log: logging.Logger, meanwhile: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.meanwhile = meanwhile
        self.clock = clock
        self.ok: bool | None = None
        self.down_since = 0.0
        self.closing = False  # the process is closing its pool: lost connections are its own doing
        self.trouble = asyncio.Event()  # a call failed or a connection was lost: `watch_database` probes
        self._error = ""  # the last error the server answered with, logged once

    @property
    def status(self) -> str:
        """`ok` or `unreachable` (`unreachable` too before the first contact)."""
        return "ok" if self.ok else "unreachable"

    def failed(self, exc: BaseException, *, outage: bool | None = None) -> None:
        """A database call failed: if the server is away (`outage`, else `is_outage`), the outage starts
        now unless it already had; an error the server answered with is logged once until a call works."""
        if self.closing or self.ok is False:
            return
        if not (is_outage(exc) if outage is None else outage):
            reason = one_line(exc)
            if reason != self._error:
                self._error = reason
                self.log.warning("database error: %s", reason)
            return
        self.ok, self.down_since = False, self.clock()
        self.trouble.set()
        self.log.warning("database unreachable: %s; %s", one_line(exc), self.meanwhile)

    def answered(self) -> None:
        """A database call worked. It does not end an outage: a session opened before the server went
        down may still answer for a moment while it shuts down; only `recovered()` (a new session,
        `probe`) says that the database is back."""
        if self.ok is not False:
            self.ok, self._error = True, ""
            self.trouble.clear()

    def recovered(self) -> None:
        """A new session answered: the database is there; an outage, if there was one, is over."""
        if self.ok is False:
            self.log.warning("database reachable again after %.1f s", self.clock() - self.down_since)
        self.ok, self._error = True, ""
        self.trouble.clear()

    def connection_lost(self) -> None:
        """The server closed one of the pool's connections: `watch_database` asks at once whether the
        database is down (a restart, a crash) or only that session ended (an administrator's kill)."""
        if not self.closing:
            self.trouble.set()


async def probe(url: str, health: DatabaseHealth) -> bool:
    """Ask the database, on a new session, whether it answers (within `PROBE_TIMEOUT_S`); report the
    answer to `health`. A new session, because one opened before a shutdown may still answer for a
    moment, while the server already refuses every new one."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            conn = await asyncpg.connect(url, timeout=PROBE_TIMEOUT_S)
            try:
                await conn.fetchval(query("ping"))
            finally:
                await conn.close(timeout=PROBE_TIMEOUT_S)
    except DATABASE_ERRORS as exc:
        health.failed(exc, outage=True)  # no new session: whatever the reason, the database is not usable
        return False
    health.recovered()
    return True


async def watch_database(
    url: str, health: DatabaseHealth, on_back: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Until cancelled: whenever a call failed or a connection was lost, probe the database at once,
    then every `RETRY_S` doubling up to `RETRY_MAX_S` until it answers; after an outage, `on_back()`."""
    while True:
        await health.trouble.wait()
        delay, was_down = RETRY_S, False
        while health.trouble.is_set() and not health.closing:
            was_down = was_down or health.ok is False
            if await probe(url, health):
                break
            was_down = was_down or health.ok is False
            await asyncio.sleep(delay)
            delay = min(RETRY_MAX_S, delay * 2)
        if was_down and on_back is not None and not health.closing:
            await on_back()
