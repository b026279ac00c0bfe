"""Rankings pushed, not polled: once the health worker marks an offer unhealthy, every proxy ranks it
last on its own (through Redis pub/sub and the shared cache, or Postgres LISTEN/NOTIFY without Redis),
long before its TTL refresh would have."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from health.worker import HealthWorker
from tests.health_helpers import health_config, offer_health, sync, wait_until

BODY = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}


def lookups(proxy: Any) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{proxy.base}/metrics").text
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "gatewayz_cache_lookups_total":
                found[(s.labels["layer"], s.labels["result"])] = s.value
    return found


def health_in_proxy(proxy: Any, slug: str) -> str:
    offers = proxy.gateway.catalog.lookup("gpt-4") or ()
    return next((o.health.value for o in offers if o.provider_slug == slug), "")


@pytest.fixture(params=["redis", "postgres"])
def channel(request: Any, redis_server_url: str, redis_prefix: str) -> tuple[str, dict[str, str]]:
    """How the worker's events reach the proxy, and the environment that makes it so."""
    if request.param == "redis":
        return "redis", {"REDIS_URL": redis_server_url, "FAILOVER_REDIS_PREFIX": redis_prefix}
    return "postgres", {}


async def test_the_proxy_ranks_an_offer_last_once_the_worker_marks_it_unhealthy(
    channel: tuple[str, dict[str, str]], fresh_database_url: str, mock_provider: Any, proxy_server: Any
) -> None:
    a, b = mock_provider("a"), mock_provider("b")
    name, env = channel
    env = {**env, "DATABASE_URL": fresh_database_url}
    config = health_config([("a", a.url), ("b", b.url)], env=env, proxy={"catalog_ttl_s": 300})
    await sync(fresh_database_url, config)
    proxy = proxy_server(config)
    gateway = proxy.gateway
    wait_until(lambda: gateway.database_ok)
    wait_until(lambda: gateway.redis_status == "ok" if name == "redis" else gateway.listener.listening)
    first = httpx.post(f"{proxy.url}/chat/completions", json=BODY)
    assert first.headers["x-gatewayz-provider"] == "a"

    async with HealthWorker(config, fresh_database_url) as worker:
        reports = [await worker.run_once()]  # both healthy
        a.set_faults(fault="status", status=500)
        reports += [await worker.run_once() for _ in range(3)]  # the third failure in a row flips a
    assert [r.event_channel for r in reports if r is not None] == [name, "", "", name]
    assert (await offer_health(fresh_database_url))["a"] == "unhealthy"

    wait_until(lambda: health_in_proxy(proxy, "a") == "unhealthy")
    before = a.stats()["requests"]
    answer = httpx.post(f"{proxy.url}/chat/completions", json=BODY)
    assert answer.status_code == 200
    assert (answer.headers["x-gatewayz-provider"], answer.headers["x-gatewayz-attempts"]) == ("b", "1")
    assert a.stats()["requests"] == before  # the proxy never tried a
    found = lookups(proxy)
    if name == "redis":
        assert found[("redis", "hit")] >= 1  # the worker's shared cache answered the event
        assert found.get(("postgres", "error"), 0) == 0
    else:
        assert found[("postgres", "hit")] >= 2  # start-up load, then the event's models
    assert found[("memory", "miss")] >= 1
