"""Migrations: the documented schema, applied once, recorded, safe to run twice or at once."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from proxy.cli import main
from proxy.errors import CatalogError
from proxy.store.migrate import apply_migrations, load_migrations, migrations_dir, pending_migrations
from proxy.store.queries import query
from proxy.store.schema import SCHEMA


async def test_migrated_database_has_exactly_the_documented_columns(fresh_database_url: str) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        applied = await apply_migrations(conn)
        rows = await conn.fetch(
            "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        )
    finally:
        await conn.close()
    actual: dict[str, tuple[str, ...]] = {}
    for row in rows:
        actual[row["t"]] = (*actual.get(row["t"], ()), row["c"])
    assert applied == [m.name for m in load_migrations()]
    assert actual == SCHEMA


async def test_migrating_twice_applies_nothing_the_second_time(fresh_database_url: str) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        first = await apply_migrations(conn)
        second = await apply_migrations(conn)
        recorded = await conn.fetchval("SELECT count(*) FROM schema_migrations")
        pending = await pending_migrations(conn)
    finally:
        await conn.close()
    assert len(first) >= 3
    assert second == []
    assert recorded == len(first)
    assert pending == []


async def test_two_concurrent_migrations_are_safe(fresh_database_url: str) -> None:
    a = await asyncpg.connect(fresh_database_url)
    b = await asyncpg.connect(fresh_database_url)
    try:
        results = await asyncio.gather(apply_migrations(a), apply_migrations(b))
        recorded = await a.fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        await a.close()
        await b.close()
    assert sorted(results, key=len) == [[], [m.name for m in load_migrations()]]
    assert recorded == len(load_migrations())


async def test_a_pool_works_as_well_as_a_connection(fresh_database_url: str) -> None:
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=2)
    try:
        assert await apply_migrations(pool)
        assert await pool.fetchval("SELECT to_regclass('offer_catalog') IS NOT NULL")
    finally:
        await pool.close()


async def test_an_applied_migration_that_changed_is_refused(fresh_database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), folder)
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await apply_migrations(conn, folder)
        first = sorted(folder.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- edited\n")
        with pytest.raises(CatalogError, match=f"{first.name} was changed after it was applied"):
            await apply_migrations(conn, folder)
    finally:
        await conn.close()


async def test_a_failing_migration_is_rolled_back_and_not_recorded(
    fresh_database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int); SELECT no_such_function();")
    conn = await asyncpg.connect(fresh_database_url)
    try:
        with pytest.raises(CatalogError, match=r"0002_bad\.sql failed"):
            await apply_migrations(conn, tmp_path)
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        half = await conn.fetchval("SELECT to_regclass('half')")
    finally:
        await conn.close()
    assert versions == ["0001_ok.sql"]
    assert half is None


async def _provider(conn: asyncpg.Connection) -> int:
    value: int = await conn.fetchval(
        "INSERT INTO providers (slug, name, base_url) VALUES ('p', 'P', 'http://p') RETURNING id"
    )
    return value


async def test_constraints_hold(fresh_database_url: str) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await apply_migrations(conn)
        provider_id = await _provider(conn)
        insert = (
            "INSERT INTO models (provider_id, model_id, provider_model_id) VALUES ($1, $2, $3) RETURNING id"
        )
        offer_id = await conn.fetchval(insert, provider_id, "gpt-4", "openai/gpt-4")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(insert, provider_id, "other", "openai/gpt-4")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE providers SET health_status = 'fine'")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE models SET pricing_prompt = -1")
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute(insert, provider_id + 99, "gpt-4", "x")
        track = (
            "INSERT INTO model_health_tracking (offer_id, provider, model) VALUES ($1, 'p', 'openai/gpt-4')"
        )
        await conn.execute(track, offer_id)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(track, offer_id)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE model_health_tracking SET circuit_state = 'ajar'")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO model_health_history (offer_id, source, health_status)"
                " VALUES ($1, 'guess', 'healthy')",
                offer_id,
            )
        await conn.execute(
            "UPDATE model_health_tracking SET success_count = success_count + 3, error_count = 1"
        )
        assert await conn.fetchval("SELECT call_count FROM model_health_tracking") == 4
    finally:
        await conn.close()


async def test_the_ranked_offer_query_can_use_the_partial_index(fresh_database_url: str) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await apply_migrations(conn)
        await conn.execute("SET enable_seqscan = off")
        plan = await conn.fetch(
            "EXPLAIN " + query("load_offers_for_models").replace("$1::text[]", "'{gpt-4}'")
        )
    finally:
        await conn.close()
    assert "models_active_model_id_idx" in "\n".join(r[0] for r in plan)


def test_cli_migrate_says_what_it_applied(
    fresh_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # no failover.toml here: migrate runs on the defaults
    monkeypatch.delenv("FAILOVER_CONFIG", raising=False)
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    assert main(["migrate"]) == 0
    out = capsys.readouterr().out
    assert "applied 0001_providers_and_models.sql" in out
    assert main(["migrate"]) == 0
    assert "database is up to date" in capsys.readouterr().out
