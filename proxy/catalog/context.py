"""What the catalog commands (`migrate`, `sync`, `check`, `explain`) share: their config and their pool.

`migrate`, `check` and `explain` only need a database, so with no `--config`, no `$FAILOVER_CONFIG`
and no `failover.toml` they run on the defaults (the database from `DATABASE_URL`, or the embedded
one). An explicitly named config file must exist and be valid, as everywhere.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from proxy.config import DEFAULT_CONFIG_PATH, Config, config_from_mapping, load_config
from proxy.errors import CatalogError
from proxy.store.database import create_pool, database_url


def command_config(args: argparse.Namespace, *, require_file: bool = False) -> Config:
    """The config named by `--config` / $FAILOVER_CONFIG / `failover.toml`, else (if allowed) defaults."""
    path = getattr(args, "config", None)
    named = path or os.environ.get("FAILOVER_CONFIG")
    if named or require_file or Path(DEFAULT_CONFIG_PATH).exists():
        return load_config(path)
    return config_from_mapping({}, "(defaults: no config file)", os.environ)


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
