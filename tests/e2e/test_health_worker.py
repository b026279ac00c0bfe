"""The health worker against real Postgres and mock providers on loopback: probes, hysteresis,
history and tracking rows, leadership between two workers, pruning, and the CLI."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from health.worker import HealthWorker, RoundReport
from proxy.cli import main
from proxy.config import load_config
from proxy.store.health_counts import CountsRow, add_health_counts
from proxy.types import PassiveCounts
from tests.conftest import _swap_database
from tests.health_helpers import FAST, KEYS, eventually, health_config, offer_health, rows, sync, tracking
from tests.metric_reader import metric_value


def sample(worker: HealthWorker, name: str, **labels: str) -> float:
    return metric_value(worker.metrics.exposition(), name, **labels)


async def rounds(worker: HealthWorker, n: int) -> list[RoundReport]:
    reports = []
    for _ in range(n):
        report = await worker.run_once()
        assert report is not None
        reports.append(report)
    return reports


async def test_500s_turn_an_offer_unhealthy_after_several_rounds_and_it_recovers(
    fresh_database_url: str, mock_provider: Any
) -> None:
    a, b = mock_provider("a"), mock_provider("b")
    config = health_config([("a", a.url), ("b", b.url)])
    await sync(fresh_database_url, config)
    async with HealthWorker(config, fresh_database_url) as worker:
        first = await worker.run_once()
        assert first is not None and first.event_channel == "postgres" and first.decision.changed_models == {"gpt-4"}
        assert await offer_health(fresh_database_url) == {"a": "healthy", "b": "healthy"}

        a.set_faults(fault="status", status=500)
        for _ in range(2):  # one error, then two in a row: still healthy (no flapping)
            report = await worker.run_once()
            assert report is not None and report.event_channel == "" and not report.decision.changed_models
            assert (await offer_health(fresh_database_url))["a"] == "healthy"
        third = await worker.run_once()
        assert third is not None and third.decision.changed_models == {"gpt-4"}
        assert await offer_health(fresh_database_url) == {"a": "unhealthy", "b": "healthy"}

        a.reset()
        await worker.run_once()  # one success is not enough to come back
        assert (await offer_health(fresh_database_url))["a"] == "unhealthy"
        await worker.run_once()
        assert await offer_health(fresh_database_url) == {"a": "healthy", "b": "healthy"}
        assert sample(worker, "gatewayz_probes_total", provider="a", result="500") == 3
        assert sample(worker, "gatewayz_probes_total", provider="a", result="ok") == 3
        assert sample(worker, "gatewayz_health_changes_total", provider="a", status="unhealthy") == 1

    track = await tracking(fresh_database_url)
    assert (track["a"]["success_count"], track["a"]["error_count"]) == (3, 3)
    assert (track["a"]["consecutive_successes"], track["a"]["consecutive_failures"]) == (2, 0)
    assert track["a"]["last_status"] == "success" and track["a"]["last_error"] == "HTTP 500"
    assert (track["b"]["success_count"], track["b"]["error_count"], track["b"]["consecutive_successes"]) == (6, 0, 6)
    history = await rows(
        fresh_database_url,
        "SELECT p.slug, h.* FROM model_health_history h JOIN models m ON m.id = h.offer_id "
        "JOIN providers p ON p.id = m.provider_id WHERE p.slug = 'a' ORDER BY h.id",
    )
    assert [h["source"] for h in history] == ["probe"] * 6
    assert [h["health_status"] for h in history] == ["healthy"] * 3 + ["unhealthy"] * 2 + ["healthy"]
    assert [h["http_status"] for h in history] == [200, 500, 500, 500, 200, 200]
    assert all(h["response_time_ms"] >= 0 for h in history)
    models = await rows(fresh_database_url, "SELECT success_rate, average_response_time_ms FROM models")
    assert all(m["success_rate"] is not None and m["average_response_time_ms"] is not None for m in models)
    providers = await rows(fresh_database_url, "SELECT slug, health_status, last_health_check_at FROM providers")
    assert {p["slug"]: p["health_status"] for p in providers} == {"a": "healthy", "b": "healthy"}
    assert all(p["last_health_check_at"] is not None for p in providers)


async def test_a_probe_is_a_one_token_completion_with_the_providers_own_key(
    fresh_database_url: str, mock_provider: Any
) -> None:
    a = mock_provider("a", api_key=KEYS["A_API_KEY"])
    config = health_config([("a", a.url)])
    await sync(fresh_database_url, config)
    async with HealthWorker(config, fresh_database_url) as worker:
        (report,) = await rounds(worker, 1)
    assert [r.result for r in report.results] == ["ok"]
    seen = a.stats()["recent"][-1]
    assert seen["path"] == "/v1/chat/completions"
    assert seen["body"]["model"] == "a/gpt-4" and seen["body"]["max_tokens"] == 1
    assert seen["headers"]["authorization"] == f"Bearer {KEYS['A_API_KEY']}"
    assert KEYS["A_API_KEY"] not in repr(report)


async def test_listing_probes_timeouts_and_providers_not_probed(fresh_database_url: str, mock_provider: Any) -> None:
    listed = mock_provider("a", models=("a/gpt-4",))
    unlisted = mock_provider("b", models=("something-else",))
    slow = mock_provider("c", fault="slow_first_byte", first_byte_ms=3000)
    skipped = mock_provider("d")
    health = replace(FAST, probe_timeout_s=0.3)
    config = health_config(
        [("a", listed.url), ("b", unlisted.url), ("c", slow.url), ("d", skipped.url)],
        health=health,
        probes={"a": "listing", "b": "listing", "d": "none"},
    )
    await sync(fresh_database_url, config)
    async with HealthWorker(config, fresh_database_url) as worker:
        (report,) = await rounds(worker, 1)
    results = {r.target.provider_slug: r for r in report.results}
    assert sorted(results) == ["a", "b", "c"]
    assert results["a"].result == "ok" and listed.stats()["paths"] == {"/v1/models": 1}
    assert results["b"].result == "not_listed"
    assert results["c"].result == "timeout" and results["c"].elapsed_ms < 2000
    assert skipped.stats()["requests"] == 0


async def test_traffic_counts_alone_can_turn_an_offer_unhealthy(fresh_database_url: str, mock_provider: Any) -> None:
    """A provider that is never probed still gets a status, from what the proxies flushed."""
    a = mock_provider("a")
    config = health_config([("a", a.url)], probes={"a": "none"})
    await sync(fresh_database_url, config)
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=2)
    try:
        good = PassiveCounts(successes=5, latency_ms_total=50.0, trailing_successes=5)
        bad = PassiveCounts(errors=4, last_error="503", trailing_errors=4)
        async with HealthWorker(config, fresh_database_url) as worker:
            async with pool.acquire() as conn:
                await add_health_counts(conn, [CountsRow(("a", "a/gpt-4"), good)])
            await rounds(worker, 1)
            assert await offer_health(fresh_database_url) == {"a": "healthy"}
            async with pool.acquire() as conn:
                await add_health_counts(conn, [CountsRow(("a", "a/gpt-4"), bad)])
            (report,) = await rounds(worker, 1)
            assert report.results == ()
            assert await offer_health(fresh_database_url) == {"a": "unhealthy"}
    finally:
        await pool.close()
    assert a.stats()["requests"] == 0


async def test_history_is_pruned_past_the_retention_period(fresh_database_url: str, mock_provider: Any) -> None:
    a = mock_provider("a")
    config = health_config([("a", a.url)])
    await sync(fresh_database_url, config)
    offer_id = (await rows(fresh_database_url, "SELECT id FROM models"))[0]["id"]
    conn = await asyncpg.connect(fresh_database_url)
    try:
        for age_days in (30, 8, 6):
            await conn.execute(
                "INSERT INTO model_health_history (offer_id, checked_at, source, health_status) "
                "VALUES ($1, now() - make_interval(days => $2), 'traffic', 'healthy')",
                offer_id,
                age_days,
            )
    finally:
        await conn.close()
    async with HealthWorker(config, fresh_database_url) as worker:
        (report,) = await rounds(worker, 1)
        assert sample(worker, "gatewayz_history_pruned_total") == 2
    assert report.pruned == 2
    left = await rows(fresh_database_url, "SELECT source FROM model_health_history ORDER BY checked_at")
    assert [r["source"] for r in left] == ["traffic", "probe"]


async def run_for(worker: HealthWorker, stop: asyncio.Event) -> asyncio.Task[None]:
    return asyncio.ensure_future(worker.run_forever(stop))


async def test_run_forever_marks_a_failing_provider_within_a_few_intervals(
    fresh_database_url: str, mock_provider: Any
) -> None:
    a, b = mock_provider("a", fault="status", status=503), mock_provider("b")
    config = health_config([("a", a.url), ("b", b.url)])
    await sync(fresh_database_url, config)
    stop = asyncio.Event()
    async with HealthWorker(config, fresh_database_url) as worker:
        task = await run_for(worker, stop)
        started = asyncio.get_running_loop().time()
        await eventually(lambda: _is(fresh_database_url, "a", "unhealthy"), timeout=10 * FAST.interval_s)
        elapsed = asyncio.get_running_loop().time() - started
        stop.set()
        await task
    assert elapsed < 6 * FAST.interval_s
    assert (await offer_health(fresh_database_url))["b"] == "healthy"


async def _is(url: str, slug: str, status: str) -> bool:
    return (await offer_health(url)).get(slug) == status


async def test_two_workers_never_probe_an_offer_twice_in_a_round_and_one_takes_over(
    fresh_database_url: str, mock_provider: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gatewayz.health")
    a, b = mock_provider("a"), mock_provider("b")
    config = health_config([("a", a.url), ("b", b.url)], {"gpt-4": ["a", "b"], "llama": ["a", "b"]})
    await sync(fresh_database_url, config)
    first, second = HealthWorker(config, fresh_database_url), HealthWorker(config, fresh_database_url)
    async with first, second:
        stops = [asyncio.Event(), asyncio.Event()]
        tasks = [await run_for(first, stops[0]), await run_for(second, stops[1])]
        await asyncio.sleep(8 * FAST.interval_s)
        leaders = [w for w in (first, second) if w.leadership.held]
        assert len(leaders) == 1
        leader, standby = leaders[0], (second if leaders[0] is first else first)
        # the leader dies after a round: its loop stops and its session goes without a goodbye
        leader_index = 0 if leader is first else 1
        stops[leader_index].set()
        await tasks[leader_index]
        probed = sample(leader, "gatewayz_worker_rounds_total", outcome="probed")
        await _terminate(fresh_database_url, leader.leadership.backend_pid)
        await eventually(lambda: _true(standby.leadership.held), timeout=6 * FAST.interval_s)
        await eventually(lambda: _true(sample(standby, "gatewayz_worker_rounds_total", outcome="probed") >= 2))
        stops[1 - leader_index].set()
        await tasks[1 - leader_index]
        taken_over = sample(standby, "gatewayz_worker_rounds_total", outcome="probed")
        assert sample(standby, "gatewayz_worker_rounds_total", outcome="standby") >= 3
    taking = [r for r in caplog.records if r.getMessage().startswith("took the probing leadership")]
    assert len(taking) == 2  # the first leader, then the standby that took over
    assert probed >= 3
    total_rounds = probed + taken_over
    for mock in (a, b):
        models = [r["body"]["model"] for r in mock.stats()["recent"]]
        for offer in (f"{mock.name}/gpt-4", f"{mock.name}/llama"):
            assert models.count(offer) == total_rounds, (offer, models)
    per_offer = await rows(fresh_database_url, "SELECT offer_id, count(*) AS n FROM model_health_history GROUP BY 1")
    assert {r["n"] for r in per_offer} == {total_rounds}


async def _terminate(url: str, pid: int | None) -> None:
    assert pid is not None
    await rows(url, "SELECT pg_terminate_backend($1)", pid)


async def _true(value: object) -> bool:
    return bool(value)


def test_cli_runs_one_round(fresh_database_url: str, mock_provider: Any, tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    a = mock_provider("a")
    config_file = tmp_path / "failover.toml"
    config_file.write_text(
        f"""
[health]
probe_timeout_s = 2

[[providers]]
slug = "a"
name = "A"
base_url = "{a.url}"
api_key_env = "A_API_KEY"
listing = "none"

[[models]]
model_id = "gpt-4"
offers = [{{ provider = "a", provider_model_id = "a/gpt-4" }}]
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("A_API_KEY", KEYS["A_API_KEY"])
    assert main(["--config", str(config_file), "migrate"]) == 0
    assert main(["--config", str(config_file), "sync"]) == 0
    assert main(["--config", str(config_file), "health", "--once"]) == 0
    assert "probed 1 offers (0 failed)" in capsys.readouterr().err
    assert main(["--config", str(config_file), "health", "--once", "--interval", "0"]) == 2
    assert a.stats()["requests"] == 1


CLI_CONFIG = """
[[providers]]
slug = "a"
name = "A"
base_url = "{url}"
api_key_env = "A_API_KEY"
listing = "none"

[[models]]
model_id = "gpt-4"
offers = [{{ provider = "a", provider_model_id = "a/gpt-4" }}]
"""


async def test_health_started_before_its_database_exists_waits_then_probes(
    pg_server_url: str, mock_provider: Any, tmp_path: Path
) -> None:
    config_file = tmp_path / "failover.toml"
    config_file.write_text(CLI_CONFIG.format(url=mock_provider("a").url), encoding="utf-8")
    name = f"failover_test_{uuid.uuid4().hex[:12]}"
    url = _swap_database(pg_server_url, name)
    env = {**os.environ, "DATABASE_URL": url, "A_API_KEY": KEYS["A_API_KEY"], "FAILOVER_CONFIG": str(config_file)}
    env.pop("REDIS_URL", None)
    logs = [(tmp_path / f"{kind}.log").open("wb") for kind in ("once", "forever")]
    commands = [["health", "--once"], ["health", "--interval", "0.2"]]
    children = [
        subprocess.Popen([sys.executable, "-m", "proxy.cli", *command], env=env, stdout=log, stderr=log)
        for command, log in zip(commands, logs, strict=True)
    ]
    try:
        for kind in ("once", "forever"):  # both reached the database and wait for it (however slow their start)
            await eventually(lambda kind=kind: _logged(tmp_path / f"{kind}.log", "database unreachable: "), timeout=30)
        assert [child.poll() for child in children] == [None, None]
        admin = await asyncpg.connect(pg_server_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        config = load_config(config_file, {"A_API_KEY": KEYS["A_API_KEY"]})
        await sync(url, config)
        assert await asyncio.to_thread(children[0].wait, 60) == 0
        await eventually(lambda: rows(url, "SELECT 1 FROM model_health_history WHERE source = 'probe'"), timeout=30)
        # the --once worker may have held the leadership for its round: the other takes it once that one left
        forever_log = tmp_path / "forever.log"
        await eventually(lambda: _logged(forever_log, "took the probing leadership"), timeout=30)
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
                child.wait(timeout=15)
        for log in logs:
            log.close()
        admin = await asyncpg.connect(pg_server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
    once, forever = ((tmp_path / f"{kind}.log").read_text() for kind in ("once", "forever"))
    assert "database unreachable: " in once and "database reachable again" in once and "probed" in once, once
    assert "database unreachable: " in forever and "took the probing leadership" in forever, forever


async def _logged(path: Path, text: str) -> bool:
    return text in path.read_text(encoding="utf-8", errors="replace")


async def test_an_anthropic_speaking_offer_is_probed_through_its_messages_api(
    fresh_database_url: str, mock_provider: Any
) -> None:
    a = mock_provider("a", api_key=KEYS["A_API_KEY"])  # refuses any request not signed as Anthropic signs
    config = health_config([("a", a.url)])
    config = replace(config, providers=tuple(replace(p, api="anthropic", endpoints=("chat",)) for p in config.providers))
    await sync(fresh_database_url, config)
    async with HealthWorker(config, fresh_database_url) as worker:
        await rounds(worker, 2)
    assert await offer_health(fresh_database_url) == {"a": "healthy"}
    probe = a.stats()["recent"][-1]
    assert probe["path"] == "/v1/messages" and probe["body"]["max_tokens"] == 1
    assert probe["headers"]["x-api-key"] == KEYS["A_API_KEY"] and "authorization" not in probe["headers"]
