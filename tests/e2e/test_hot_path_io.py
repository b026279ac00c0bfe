"""The request path touches neither Postgres nor Redis: counted on the servers themselves
(`pg_stat_database`, `INFO commandstats`) over a few hundred requests; and it keeps serving while
Postgres refuses every connection, then everything reconnects."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import httpx
import redis

from proxy.config import UsageSettings
from tests.health_helpers import eventually, health_config, own_valkey, sync, tracking, wait_until

BODY = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}
REQUESTS = 300
TTL_S, FLUSH_S = 1.0, 0.5


def db_name(url: str) -> str:
    return url.split("?", 1)[0].rsplit("/", 1)[-1]


async def admin(server_url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """Run `sql` on the server's own database (so that it is not counted against the test database)."""
    conn = await asyncpg.connect(server_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def transactions(server_url: str, name: str) -> int:
    found = await admin(server_url, "SELECT xact_commit + xact_rollback AS n FROM pg_stat_database WHERE datname = $1", name)
    return int(found[0]["n"])


async def end_sessions(server_url: str, name: str) -> None:
    """End every session on the test database; ending makes each flush its statistics."""
    # The sessions are chosen first (a materialized CTE): in one WHERE, Postgres may call
    # pg_terminate_backend before it checks datname, and end every session on the server.
    ended = await admin(
        server_url,
        "WITH chosen AS MATERIALIZED (SELECT pid FROM pg_stat_activity WHERE datname = $1) "
        "SELECT pid, pg_terminate_backend(pid) FROM chosen",
        name,
    )
    pids = [r["pid"] for r in ended]

    async def gone() -> bool:
        left = await admin(server_url, "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = ANY($1::int[])", pids)
        return bool(left[0]["n"] == 0)

    await eventually(gone)


def redis_calls(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def send(proxy: Any, count: int, *, pause_s: float = 0.0) -> None:
    with httpx.Client() as client:
        for _ in range(count):
            response = client.post(f"{proxy.url}/chat/completions", json=BODY)
            assert response.status_code == 200, response.text
            time.sleep(pause_s)


async def test_steady_state_requests_issue_no_query_and_no_redis_command(
    fresh_database_url: str, pg_server_url: str, mock_provider: Any, proxy_server: Any
) -> None:
    a, b = mock_provider("a"), mock_provider("b")
    name = db_name(fresh_database_url)
    with own_valkey() as valkey:
        env = {"DATABASE_URL": fresh_database_url, "REDIS_URL": valkey.connection_url}
        config = health_config([("a", a.url), ("b", b.url)], env=env, proxy={"catalog_ttl_s": TTL_S, "health_flush_s": FLUSH_S})
        await sync(fresh_database_url, config)
        proxy = proxy_server(config)
        wait_until(lambda: proxy.gateway.database_ok and proxy.gateway.redis_status == "ok")
        send(proxy, 20)
        await asyncio.sleep(FLUSH_S + 0.2)
        await end_sessions(pg_server_url, name)
        counter = redis.Redis.from_url(valkey.connection_url)
        try:
            pg_before, redis_before = await transactions(pg_server_url, name), redis_calls(counter)
            started = time.monotonic()
            send(proxy, REQUESTS, pause_s=0.005)  # spread over a few flushes and refreshes
            elapsed = time.monotonic() - started
            await asyncio.sleep(0.2)
            redis_used = redis_calls(counter) - redis_before
        finally:
            counter.close()
        proxy.stop()  # flushes the last counts and closes the pool: the sessions' statistics arrive
        await eventually(lambda: _no_sessions(pg_server_url, name))
        pg_used = await transactions(pg_server_url, name) - pg_before
    # the usage writer's batches: a transaction and the pool's reset per flush interval, whatever the traffic
    usage_writes = 2 * ((elapsed + 0.2) / UsageSettings().flush_s + 1)
    background_runs = (elapsed + 0.2) / TTL_S + (elapsed + 0.2) / FLUSH_S + 3  # refreshes, flushes, the last flush
    assert redis_used <= 2, redis_used
    assert pg_used <= 4 * background_runs + usage_writes, (pg_used, elapsed)  # a few statements per background run
    assert pg_used < REQUESTS / 10 + usage_writes, (pg_used, elapsed)
    track = await tracking(fresh_database_url)
    assert track["a"]["success_count"] == 20 + REQUESTS  # every request counted, in a handful of batches


async def _no_sessions(server_url: str, name: str) -> bool:
    left = await admin(server_url, "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1", name)
    return bool(left[0]["n"] == 0)


async def test_requests_keep_succeeding_while_postgres_refuses_connections(
    fresh_database_url: str, pg_server_url: str, mock_provider: Any, proxy_server: Any
) -> None:
    a, b = mock_provider("a"), mock_provider("b")
    name = db_name(fresh_database_url)
    config = health_config(
        [("a", a.url), ("b", b.url)],
        env={"DATABASE_URL": fresh_database_url},
        proxy={"catalog_ttl_s": 0.3, "health_flush_s": 0.3},
    )
    await sync(fresh_database_url, config)
    proxy = proxy_server(config)
    wait_until(lambda: proxy.gateway.database_ok and proxy.gateway.listener.listening)
    send(proxy, 5)
    await admin(pg_server_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        await end_sessions(pg_server_url, name)
        wait_until(lambda: httpx.get(f"{proxy.base}/readyz").json()["database"] == "unreachable")
        ready = httpx.get(f"{proxy.base}/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert ready.json()["catalog"]["models"] == 1
        send(proxy, 30)  # the last known rankings keep serving
        assert not proxy.gateway.listener.listening
    finally:
        await admin(pg_server_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    wait_until(lambda: httpx.get(f"{proxy.base}/readyz").json()["database"] == "ok", timeout=10)
    wait_until(lambda: proxy.gateway.listener.listening, timeout=10)
    send(proxy, 5)

    async def all_counted() -> bool:
        return bool((await tracking(fresh_database_url))["a"]["success_count"] == 40)

    await eventually(all_counted, timeout=5)  # the counts of the outage were kept and flushed after it
