"""`failover check`: the guide's ten checks, PASS on a good catalog, the right FAILs otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from proxy.cli import main
from proxy.commands.check import CHECKS, CheckResult, run_checks, summary
from tests.catalog_helpers import migrated_pool, seed_catalog

NAMES = [
    "Database Connection",
    "Schema Tables",
    "Schema Columns",
    "Providers Data",
    "Models Data",
    "Failover Query - Basic",
    "Failover Query - Sorting",
    "Model Aliases",
    "Health Tracking",
    "Failover Simulation",
]


@pytest.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with migrated_pool(fresh_database_url) as pool:
        yield pool


def verdicts(results: list[CheckResult]) -> dict[str, bool]:
    return {r.name: r.passed for r in results}


def test_the_checks_are_the_guides_ten_in_order() -> None:
    assert [name for name, _ in CHECKS] == NAMES


async def test_all_ten_pass_on_a_good_catalog(pool: asyncpg.Pool) -> None:
    await seed_catalog(pool)
    results = await run_checks(pool)
    assert [r.name for r in results if not r.passed] == [], [r.line() for r in results]
    assert summary(results) == "Total: 10 tests, 10 passed, 0 failed"
    by_name = {r.name: r.reason for r in results}
    assert "gpt-4 on 3 (openrouter, featherless, portkey)" in by_name["Failover Query - Basic"]
    assert "'gpt-4' on openrouter -> 'openai/gpt-4'" in by_name["Model Aliases"]
    assert by_name["Failover Simulation"] == "gpt-4: openrouter fails -> featherless ('gpt-4', healthy)"


async def test_an_empty_catalog_fails_with_the_sync_hint(pool: asyncpg.Pool) -> None:
    results = await run_checks(pool)
    assert verdicts(results) == {name: name in NAMES[:3] for name in NAMES}
    for result in results[3:]:
        assert "run `failover sync`" in result.reason, result.line()
    assert summary(results) == "Total: 10 tests, 3 passed, 7 failed"


async def test_an_unmigrated_database_fails_with_the_migrate_hint(fresh_database_url: str) -> None:
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=2)
    try:
        results = await run_checks(pool)
    finally:
        await pool.close()
    assert verdicts(results) == {name: name == "Database Connection" for name in NAMES}
    for result in results[1:]:
        assert "run `failover migrate`" in result.reason, result.line()
    assert results[1].reason.startswith("missing: key_spend, model_health_history, model_health_tracking, models")


async def test_offers_without_tracking_rows_fail_health_tracking(pool: asyncpg.Pool) -> None:
    await seed_catalog(pool)
    await pool.execute("DELETE FROM model_health_tracking WHERE model = 'gpt-4'")
    results = {r.name: r for r in await run_checks(pool)}
    assert not results["Health Tracking"].passed
    assert results["Health Tracking"].reason.startswith("1 of 6 active offers have no model_health_tracking row")


async def test_a_catalog_without_a_second_offer_still_passes_with_a_note(pool: asyncpg.Pool) -> None:
    await seed_catalog(pool)
    await pool.execute("UPDATE models SET is_active = false WHERE provider_model_id <> 'solo-model'")
    results = {r.name: r for r in await run_checks(pool)}
    assert all(r.passed for r in results.values()), [r.line() for r in results.values()]
    assert "nothing to fail over to" in results["Failover Simulation"].reason


async def test_without_a_connection_every_check_fails() -> None:
    results = await run_checks(None, "cannot connect to PostgreSQL at postgresql://x@127.0.0.1:9/db")
    assert verdicts(results) == dict.fromkeys(NAMES, False)
    assert results[0].line() == "[FAIL] Database Connection: cannot connect to PostgreSQL at postgresql://x@127.0.0.1:9/db"
    assert results[1].reason == "skipped: no database connection"


def test_cli_prints_ten_lines_and_the_summary_and_exits_by_result(
    fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FAILOVER_CONFIG", raising=False)
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    assert main(["check"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[PASS] Database Connection: connected to PostgreSQL")
    assert out[1].startswith("[FAIL] Schema Tables: missing:") and out[1].endswith("run `failover migrate`")
    assert out[-1] == "Total: 10 tests, 1 passed, 9 failed"

    async def seed() -> None:
        async with migrated_pool(fresh_database_url) as pool:
            await seed_catalog(pool)

    asyncio.run(seed())
    assert main(["check"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out[:10]] == [f"[PASS] {name}" for name in NAMES]
    assert out[-1] == "Total: 10 tests, 10 passed, 0 failed"


def test_cli_with_an_unreachable_database_fails_every_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FAILOVER_CONFIG", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody:hunter2@127.0.0.1:9/none")
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] Database Connection: cannot connect to PostgreSQL at postgresql://nobody:***@127.0.0.1:9/none" in out
    assert "hunter2" not in out
    assert out.splitlines()[-1] == "Total: 10 tests, 0 passed, 10 failed"
