"""Passive health: each proxy flushes what it saw to `model_health_tracking` in batches, with atomic
increments, never per request; `source = traffic` history rows at a bounded rate."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import asyncpg
import httpx

from proxy.config import HealthSettings
from proxy.runtime.flush import HealthFlusher, traffic_health
from proxy.runtime.state import RuntimeState
from proxy.store.health_counts import merge_counts
from proxy.types import Health, Offer, PassiveCounts
from tests.health_helpers import FAST, health_config, rows, sync, tracking, wait_until

BODY = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}


def test_merging_batches_keeps_the_run_the_later_one_ends_with() -> None:
    ok3 = PassiveCounts(successes=3, latency_ms_total=30.0, last_status="ok", trailing_successes=3)
    err2 = PassiveCounts(errors=2, last_status="503", last_error="503", trailing_errors=2)
    mixed = PassiveCounts(successes=1, errors=1, last_status="ok", last_error="500", trailing_successes=1)
    assert merge_counts(ok3, ok3).trailing_successes == 6
    both = merge_counts(ok3, err2)
    assert (both.successes, both.errors, both.trailing_successes, both.trailing_errors) == (3, 2, 0, 2)
    assert (both.latency_ms_total, both.last_error) == (30.0, "503")
    assert merge_counts(err2, err2).trailing_errors == 4
    assert (merge_counts(err2, mixed).trailing_successes, merge_counts(err2, mixed).trailing_errors) == (1, 0)
    assert merge_counts(err2, PassiveCounts()).trailing_errors == 2


def test_a_traffic_row_records_the_share_of_failed_requests() -> None:
    assert traffic_health(PassiveCounts(successes=9, errors=1), HealthSettings()) is Health.HEALTHY
    assert traffic_health(PassiveCounts(successes=3, errors=1), HealthSettings()) is Health.DEGRADED
    assert traffic_health(PassiveCounts(successes=1, errors=1), HealthSettings()) is Health.UNHEALTHY


def post(proxy: Any, client: httpx.Client) -> httpx.Response:
    response = client.post(f"{proxy.url}/chat/completions", json=BODY)
    assert response.status_code == 200, response.text
    return response


async def test_the_proxy_flushes_its_counts_in_batches_with_bounded_history(
    fresh_database_url: str, mock_provider: Any, proxy_server: Any
) -> None:
    a, b = mock_provider("a", fault="status", status=500), mock_provider("b")
    health = replace(FAST, traffic_history_interval_s=60.0)
    config = health_config(
        [("a", a.url), ("b", b.url)],
        env={"DATABASE_URL": fresh_database_url},
        proxy={"health_flush_s": 0.2},
        health=health,
    )
    await sync(fresh_database_url, config)
    proxy = proxy_server(config)
    wait_until(lambda: proxy.gateway.database_ok)
    started = time.monotonic()
    with httpx.Client() as client:
        for _ in range(40):
            post(proxy, client)
    track = await _tracked(fresh_database_url, "b", 40)
    assert track["b"]["consecutive_successes"] == 40 and track["b"]["last_status"] == "success"
    assert track["b"]["average_response_time_ms"] > 0
    attempts_on_a = a.stats()["requests"]  # a few, then the proxy ranked it last on its own evidence
    assert 1 <= attempts_on_a < 40
    assert (track["a"]["error_count"], track["a"]["consecutive_failures"]) == (attempts_on_a, attempts_on_a)
    assert (track["a"]["success_count"], track["a"]["last_status"], track["a"]["last_error"]) == (0, "error", "500")
    flushes = proxy.gateway.flusher.flushes
    assert 1 <= flushes <= (time.monotonic() - started) / 0.2 + 2  # batches on a clock, not one per request

    with httpx.Client() as client:
        for _ in range(20):
            post(proxy, client)
    track = await _tracked(fresh_database_url, "b", 60)
    history = await rows(
        fresh_database_url,
        "SELECT p.slug, h.* FROM model_health_history h JOIN models m ON m.id = h.offer_id "
        "JOIN providers p ON p.id = m.provider_id ORDER BY p.slug",
    )
    assert [(h["slug"], h["source"]) for h in history] == [("a", "traffic"), ("b", "traffic")]  # one per minute
    assert (history[0]["health_status"], history[0]["http_status"], history[0]["error"]) == ("unhealthy", 500, "500")
    assert history[1]["health_status"] == "healthy" and history[1]["response_time_ms"] > 0


async def _tracked(url: str, slug: str, successes: int) -> dict[str, asyncpg.Record]:
    deadline = time.monotonic() + 5
    while True:
        track = await tracking(url)
        if track[slug]["success_count"] == successes or time.monotonic() > deadline:
            assert track[slug]["success_count"] == successes
            return track
        await asyncio.sleep(0.05)


async def test_a_cooldown_is_flushed_with_its_end(
    fresh_database_url: str, mock_provider: Any, proxy_server: Any
) -> None:
    a, b = mock_provider("a", fault="rate_limit", retry_after="30"), mock_provider("b")
    config = health_config(
        [("a", a.url), ("b", b.url)], env={"DATABASE_URL": fresh_database_url}, proxy={"health_flush_s": 0.2}
    )
    await sync(fresh_database_url, config)
    proxy = proxy_server(config)
    wait_until(lambda: proxy.gateway.database_ok)
    with httpx.Client() as client:
        assert post(proxy, client).headers["x-gatewayz-attempts"] == "2"
    await _tracked(fresh_database_url, "b", 1)
    found = await rows(fresh_database_url, "SELECT cooldown_until - now() AS left FROM model_health_tracking WHERE provider = 'a'")
    assert 20 < found[0]["left"].total_seconds() <= 30


async def test_concurrent_flushers_never_lose_an_increment(fresh_database_url: str, mock_provider: Any) -> None:
    """Three proxies flush the same offer at once, over and over: every count arrives."""
    a = mock_provider("a")
    config = health_config([("a", a.url)])
    await sync(fresh_database_url, config)
    offer = Offer("gpt-4", "a", "a/gpt-4", a.url, "A_API_KEY")
    pool = await asyncpg.create_pool(fresh_database_url, min_size=3, max_size=3)
    try:
        states = [RuntimeState(config.proxy, health=config.health) for _ in range(3)]
        flushers = [HealthFlusher(s, lambda: pool) for s in states]
        for _ in range(10):
            for state in states:
                for _ in range(7):
                    state.record_success(offer, 10.0, time.time())
                state.record_failure(offer, "503", time.time())
            await asyncio.gather(*(f.flush() for f in flushers))
    finally:
        await pool.close()
    track = (await tracking(fresh_database_url))["a"]
    assert (track["success_count"], track["error_count"], track["call_count"]) == (210, 30, 240)
    assert (track["consecutive_failures"], track["consecutive_successes"]) == (1, 0)
    assert track["average_response_time_ms"] == 10.0


async def test_a_flush_that_fails_keeps_its_counts_for_the_next(fresh_database_url: str, mock_provider: Any) -> None:
    a = mock_provider("a")
    config = health_config([("a", a.url)])
    await sync(fresh_database_url, config)
    offer = Offer("gpt-4", "a", "a/gpt-4", a.url, "A_API_KEY")
    state = RuntimeState(config.proxy, health=config.health)
    broken = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=1)
    await broken.close()
    current = [broken]
    flusher = HealthFlusher(state, lambda: current[0])
    for _ in range(3):
        state.record_success(offer, 5.0, time.time())
    try:
        await flusher.flush()
    except (asyncpg.InterfaceError, OSError) as exc:
        assert flusher.failing, exc
    else:
        raise AssertionError("a flush through a closed pool should fail")
    state.record_success(offer, 5.0, time.time())
    current[0] = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=1)
    try:
        assert await flusher.flush() == 1
        assert await flusher.flush() == 0  # nothing new: no transaction at all
    finally:
        await current[0].close()
    track = (await tracking(fresh_database_url))["a"]
    assert (track["success_count"], track["consecutive_successes"]) == (4, 4)
