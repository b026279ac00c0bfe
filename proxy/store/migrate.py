"""`failover migrate`: apply the numbered SQL files of `migrations/`, once each, in order.

Applied files are recorded in `schema_migrations` with a checksum, so a second run applies nothing
and a file edited after it was applied is refused. Everything runs under a Postgres advisory lock,
so two processes migrating at once (two replicas starting together) are safe: the second waits,
then finds nothing left to do. Each file runs in its own transaction with its record.

Where the files are: the canonical copies live in the repository's top-level `migrations/` folder
(the SPEC's layout). The package is installed editable (`pip install -e .`), so they are found next
to the `proxy/` package, `Path(__file__).parents[2] / "migrations"`. An install that does not keep
that layout (a wheel) points `FAILOVER_MIGRATIONS_DIR` at a copy of the folder.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from proxy.config import command_config
from proxy.errors import CatalogError
from proxy.store.database import open_pool

Connection = asyncpg.Connection | PoolConnectionProxy

LOCK_KEY = 7_316_482_019_604_331  # pg_advisory_lock key of this product's migrations

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     TEXT PRIMARY KEY,
    checksum    TEXT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
)"""
_APPLIED = "SELECT version, checksum FROM schema_migrations"
_RECORD = "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)"


def migrations_dir() -> Path:
    """The folder of migration files: $FAILOVER_MIGRATIONS_DIR, else `migrations/` beside `proxy/`."""
    override = os.environ.get("FAILOVER_MIGRATIONS_DIR")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "migrations"


@dataclass(frozen=True, slots=True)
class Migration:
    name: str  # the file name, e.g. "0001_providers_and_models.sql": what the ledger records
    sql: str
    checksum: str


def load_migrations(folder: Path | None = None) -> list[Migration]:
    """The `NNNN_name.sql` files, read, in the order they apply."""
    folder = folder or migrations_dir()
    if not folder.is_dir():
        raise CatalogError(f"migrations folder not found: {folder} (set FAILOVER_MIGRATIONS_DIR)")
    paths = sorted(p for p in folder.glob("*.sql") if p.name[:4].isdigit())
    return [Migration(p.name, p.read_text(encoding="utf-8"), _sha256(p.read_bytes())) for p in paths]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def pending_migrations(conn: Connection, folder: Path | None = None) -> list[str]:
    """Names of the files not applied yet (all of them on a database without the ledger)."""
    migrations = load_migrations(folder)
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    applied = {r["version"] for r in await conn.fetch(_APPLIED)} if exists else set()
    return [m.name for m in migrations if m.name not in applied]


async def apply_migrations(conn_or_pool: Connection | asyncpg.Pool, folder: Path | None = None) -> list[str]:
    """Apply every pending migration under the advisory lock; return the names applied, in order.

    Takes an asyncpg connection or pool (a pool lends one connection for the whole run).
    Raises `CatalogError` when an applied file was changed since, or a file fails to apply.
    """
    if isinstance(conn_or_pool, asyncpg.Pool):
        async with conn_or_pool.acquire() as conn:
            return await _apply_locked(conn, load_migrations(folder))
    return await _apply_locked(conn_or_pool, load_migrations(folder))


async def _apply_locked(conn: Connection, migrations: list[Migration]) -> list[str]:
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await conn.execute(_CREATE_LEDGER)
        applied = {r["version"]: r["checksum"] for r in await conn.fetch(_APPLIED)}
        done = []
        for migration in migrations:
            if migration.name not in applied:
                await _apply_one(conn, migration)
                done.append(migration.name)
            elif applied[migration.name] != migration.checksum:
                raise CatalogError(f"migration {migration.name} was changed after it was applied")
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def _apply_one(conn: Connection, migration: Migration) -> None:
    try:
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(_RECORD, migration.name, migration.checksum)
    except asyncpg.PostgresError as exc:
        raise CatalogError(f"migration {migration.name} failed: {exc}") from exc


def run_migrate(args: argparse.Namespace) -> int:
    """The CLI: apply pending migrations and say which; exit 0."""
    config = command_config(args)

    async def main() -> list[str]:
        async with open_pool(config) as pool:
            return await apply_migrations(pool)

    applied = asyncio.run(main())
    for name in applied:
        print(f"applied {name}")
    print(f"{len(applied)} migration(s) applied" if applied else "database is up to date")
    return 0
