"""Where the database is: `DATABASE_URL`, or an embedded PostgreSQL in a data folder the user can see.

The embedded server (`proxy.store.embedded`) listens on a Unix socket inside the data folder, keeps
its data between runs, and is stopped when the last process using it exits.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from proxy.config import Config
from proxy.errors import CatalogError, ConfigError
from proxy.store import embedded
from proxy.store.embedded import embedded_url

DATABASE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)
"""What a database call may raise when the server is away or refuses: callers with a fallback catch these."""
CONNECT_TIMEOUT_S = 10.0  # an unreachable host must not hold a start-up (or a refresh) for long


def database_url(config: Config, *, announce: bool = True) -> str:
    """The URL to use: `DATABASE_URL` when set, else the embedded server's."""
    if config.database_url:
        return config.database_url.reveal()
    return embedded_url(config.data_dir, announce=announce)


async def create_pool(
    url: str, *, min_size: int = 1, max_size: int = 5, on_lost: Callable[[], None] | None = None
) -> asyncpg.Pool:
    """A connection pool, or `CatalogError` that says where it could not connect (never the password).

    With `on_lost` (a long-running process: `proxy.store.outage`), the pool keeps no connection floor
    (`min_size` 0: nothing to restore while the server is away, so asyncpg logs no traceback per
    retry), connects on first use, never closes an idle connection on its own, and calls `on_lost()`
    whenever a connection ends: while the pool is open, only the server (or the network) ends one."""
    extra: dict[str, Any] = {}
    if on_lost is not None:

        async def watch(conn: asyncpg.Connection) -> None:
            conn.add_termination_listener(lambda _conn: on_lost())

        extra = {"init": watch, "max_inactive_connection_lifetime": 0}
        min_size = 0
    try:
        pool = await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, command_timeout=30, timeout=CONNECT_TIMEOUT_S, **extra
        )
    except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # OSError: unreachable; ValueError/InterfaceError: a URL the driver cannot use (bad port, sslmode...)
        raise CatalogError(f"cannot connect to PostgreSQL at {redact_url(url)}: {exc}") from exc
    assert pool is not None
    return pool


def database_fingerprint(url: str) -> str:
    """A short stable name of the database a URL points at (user, host, port, database; never the
    password): what a catalog snapshot was taken from."""
    return hashlib.sha256(redact_url(url).encode()).hexdigest()[:16]


def redact_url(url: str) -> str:
    """The URL with any password replaced, for messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"


@asynccontextmanager
async def open_pool(config: Config) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on the configured (or embedded) database, closed on exit.

    A query on a database that was never migrated becomes a `CatalogError` that says so.
    """
    pool = await create_pool(database_url(config), min_size=1, max_size=4)
    try:
        yield pool
    except asyncpg.UndefinedTableError as exc:
        raise CatalogError(f"{exc}: the database is not migrated; run `failover migrate`") from exc
    finally:
        await pool.close()


def require_database(config: Config, command: str) -> None:
    """`ConfigError` when there is no catalog to read: no `DATABASE_URL` and no embedded database in
    the data folder (a read-only command, `check` or `explain`, started in the wrong folder or before
    `migrate`), so that it never creates an empty database only to report on it."""
    if config.database_url is not None or embedded.exists(config.data_dir):
        return
    where = embedded.pgdata_of(config.data_dir)
    raise ConfigError(
        f"{command}: no catalog to read: DATABASE_URL is unset and there is no embedded database in {where} "
        f"(config: {config.source}); run this in your project's folder, set DATABASE_URL, "
        "or create the catalog with `failover migrate` and `failover sync`"
    )
