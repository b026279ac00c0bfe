"""`failover check` on real tracked data: Health Tracking and Failover Simulation read what the health
worker and the proxies recorded (calls, success rates, statuses, cooldowns), not just the catalog."""

from __future__ import annotations

import time
from typing import Any

import asyncpg

from health.worker import HealthWorker
from proxy.commands.check import run_checks
from proxy.store.health_counts import CountsRow, add_health_counts
from proxy.types import PassiveCounts
from tests.health_helpers import health_config, sync


async def test_health_checks_report_what_the_worker_and_proxies_recorded(
    fresh_database_url: str, mock_provider: Any
) -> None:
    a, b = mock_provider("a"), mock_provider("b")
    config = health_config([("a", a.url), ("b", b.url)])
    await sync(fresh_database_url, config)
    async with HealthWorker(config, fresh_database_url) as worker:
        await worker.run_once()
        a.set_faults(fault="status", status=500)
        for _ in range(3):
            await worker.run_once()
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=2)
    try:
        results = {r.name: r for r in await run_checks(pool)}
        tracking, simulation = results["Health Tracking"], results["Failover Simulation"]
        assert tracking.passed and simulation.passed, (tracking.line(), simulation.line())
        assert tracking.reason.startswith("2 offers tracked, 8 calls recorded (62.5% ok); 1 healthy, 1 unhealthy")
        assert "last probe 0 s ago" in tracking.reason
        assert simulation.reason == (
            "gpt-4: b fails -> a ('a/gpt-4', unhealthy); tracked: b 100.0% ok over 4 calls, a 25.0% ok over 4 calls"
        )

        cooled = CountsRow(("b", "b/gpt-4"), PassiveCounts(errors=1, last_error="429", trailing_errors=1),
                           cooldown_until=time.time() + 60)  # fmt: skip
        async with pool.acquire() as conn:
            await add_health_counts(conn, [cooled])
        results = {r.name: r for r in await run_checks(pool)}
        assert "1 cooling down" in results["Health Tracking"].reason
        assert not results["Failover Simulation"].passed
        assert results["Failover Simulation"].reason == "gpt-4: no fallback usable right now (b cooling down, as tracked)"
    finally:
        await pool.close()
