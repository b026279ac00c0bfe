"""The library API of SPEC section 5 and `load_offers`, over a real Postgres catalog."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from proxy.commands.library import (
    check_model_available_on_provider,
    explain_failover_for_model,
    get_provider_model_id,
    get_providers_for_model,
)
from proxy.store.offers import list_models, load_offers
from proxy.types import Health, Strategy
from tests.catalog_helpers import migrated_pool, seed_catalog


@pytest.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with migrated_pool(fresh_database_url) as pool:
        await seed_catalog(pool)
        yield pool


async def test_load_offers_groups_active_offers_by_canonical_model(pool: asyncpg.Pool) -> None:
    catalog = await load_offers(pool)
    assert sorted(catalog) == ["gpt-4", "llama-3-70b-instruct", "solo-model"]
    offer = next(o for o in catalog["gpt-4"] if o.provider_slug == "openrouter")
    assert offer.provider_model_id == "openai/gpt-4"
    assert offer.base_url == "http://127.0.0.1:9/openrouter"
    assert (offer.health, offer.provider_health) == (Health.HEALTHY, Health.HEALTHY)
    assert offer.response_time_ms == 150.0
    assert offer.pricing_prompt == pytest.approx(0.00003)
    assert isinstance(offer.pricing_prompt, float)
    assert offer.offer_id is not None


async def test_load_offers_for_some_models_and_without_inactive_ones(pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE providers SET is_active = false WHERE slug = 'portkey'")
    await pool.execute("UPDATE models SET is_active = false WHERE provider_model_id = 'gpt-4'")
    catalog = await load_offers(pool, ["gpt-4", "solo-model", "nope"])
    assert list(catalog) == ["gpt-4"]
    assert [o.provider_slug for o in catalog["gpt-4"]] == ["openrouter"]
    assert await list_models(pool) == ["gpt-4", "llama-3-70b-instruct"]


async def test_the_tracking_ewma_is_the_offers_latency(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "UPDATE model_health_tracking SET average_response_time_ms = 42 WHERE model = 'openai/gpt-4'"
    )
    offer = next(o for o in (await load_offers(pool))["gpt-4"] if o.provider_slug == "openrouter")
    assert offer.response_time_ms == 42.0


async def test_get_providers_for_model_ranks_healthy_first_then_priority(pool: asyncpg.Pool) -> None:
    providers = await get_providers_for_model(pool, "gpt-4")
    assert [p["provider_slug"] for p in providers] == ["openrouter", "featherless", "portkey"]
    first = providers[0]
    assert first["provider_model_id"] == "openai/gpt-4"
    assert first["provider_health_status"] == "healthy"
    assert first["provider_response_time_ms"] == 150.0
    assert first["pricing_prompt"] == pytest.approx(0.00003)
    assert first["pricing_completion"] == pytest.approx(0.00006)
    assert providers[2]["effective_health"] == "degraded"


async def test_an_unhealthy_offer_goes_last(pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE models SET health_status = 'unhealthy' WHERE provider_model_id = 'openai/gpt-4'")
    providers = await get_providers_for_model(pool, "gpt-4")
    assert [p["provider_slug"] for p in providers] == ["featherless", "portkey", "openrouter"]


async def test_the_price_strategy_puts_the_cheapest_healthy_offer_first(pool: asyncpg.Pool) -> None:
    providers = await get_providers_for_model(pool, "gpt-4", strategy=Strategy.PRICE)
    assert [p["provider_slug"] for p in providers] == ["featherless", "openrouter", "portkey"]


async def test_inactive_offers_only_when_asked_and_then_last(pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE models SET is_active = false WHERE provider_model_id = 'openai/gpt-4'")
    active = await get_providers_for_model(pool, "gpt-4")
    every = await get_providers_for_model(pool, "gpt-4", active_only=False)
    assert [p["provider_slug"] for p in active] == ["featherless", "portkey"]
    assert [(p["provider_slug"], p["is_active"]) for p in every] == [
        ("featherless", True),
        ("portkey", True),
        ("openrouter", False),
    ]


async def test_unknown_model_has_no_providers(pool: asyncpg.Pool) -> None:
    assert await get_providers_for_model(pool, "nope") == []


async def test_provider_model_id_and_availability(pool: asyncpg.Pool) -> None:
    assert await get_provider_model_id(pool, "gpt-4", "openrouter") == "openai/gpt-4"
    assert await get_provider_model_id(pool, "gpt-4", "featherless") == "gpt-4"
    assert await get_provider_model_id(pool, "solo-model", "openrouter") is None
    assert await check_model_available_on_provider(pool, "gpt-4", "openrouter") is True
    assert await check_model_available_on_provider(pool, "solo-model", "featherless") is False
    await pool.execute("UPDATE providers SET is_active = false WHERE slug = 'openrouter'")
    assert await check_model_available_on_provider(pool, "gpt-4", "openrouter") is False


async def test_explain_has_the_guides_shape(pool: asyncpg.Pool) -> None:
    result = await explain_failover_for_model(pool, "gpt-4")
    assert set(result) == {"model", "strategy", "providers_available", "failover_order", "recommendation"}
    assert result["model"] == "gpt-4"
    assert result["providers_available"] == 3
    assert result["recommendation"] == "Primary: openrouter, Fallback: featherless"
    order = result["failover_order"]
    assert [(o["priority"], o["provider"], o["health"]) for o in order] == [
        (1, "openrouter", "healthy"),
        (2, "featherless", "healthy"),
        (3, "portkey", "degraded"),
    ]
    assert order[0]["reason"].startswith("primary (balanced strategy): healthy, priority 0, 150 ms")
    assert order[1]["reason"] == "after openrouter: provider priority 1 comes after 0"
    assert order[2]["reason"] == "after featherless: degraded ranks after healthy"
    assert {"provider_model_id", "response_time_ms", "pricing_prompt", "pricing_completion"} <= set(order[0])


async def test_explain_recommendations_for_one_and_no_offer(pool: asyncpg.Pool) -> None:
    solo = await explain_failover_for_model(pool, "solo-model")
    assert solo["recommendation"] == "Primary: portkey (no fallback available)"
    none = await explain_failover_for_model(pool, "nope")
    assert none == {
        "model": "nope",
        "strategy": "balanced",
        "providers_available": 0,
        "failover_order": [],
        "recommendation": "Model not available on any provider",
    }


async def test_explain_says_when_latency_or_price_decided(pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE providers SET priority = 0, health_status = 'healthy'")
    await pool.execute("UPDATE providers SET average_response_time_ms = 400 WHERE slug = 'portkey'")
    order = (await explain_failover_for_model(pool, "gpt-4"))["failover_order"]
    assert [o["provider"] for o in order] == ["openrouter", "featherless", "portkey"]
    assert order[2]["reason"] == "after featherless: slower: 400 ms vs 200 ms"
    await pool.execute("UPDATE providers SET average_response_time_ms = 150")
    order = (await explain_failover_for_model(pool, "gpt-4"))["failover_order"]
    assert [o["provider"] for o in order] == ["featherless", "openrouter", "portkey"]
    assert order[1]["reason"] == "after featherless: pricier: $0.00009 vs $0.000078 per token (prompt + completion)"


async def test_ids_are_mapped_as_the_proxy_maps_them(pool: asyncpg.Pool) -> None:
    """`openai/gpt-4` (an offer's own id) and `GPT-4` name gpt-4, as in a request; a made-up prefix names nothing."""
    assert await check_model_available_on_provider(pool, "openai/gpt-4", "featherless") is True
    assert await check_model_available_on_provider(pool, "GPT-4", "portkey") is True
    assert await get_provider_model_id(pool, "OpenAI/GPT-4", "featherless") == "gpt-4"
    assert [p["provider_slug"] for p in await get_providers_for_model(pool, "GPT-4")] == [
        "openrouter", "featherless", "portkey",
    ]  # fmt: skip
    assert (await explain_failover_for_model(pool, "openai/gpt-4"))["model"] == "gpt-4"
    meta = await get_providers_for_model(pool, "meta-llama/Meta-Llama-3-70B-Instruct")  # featherless's own id
    assert [p["model_id"] for p in meta] == ["llama-3-70b-instruct", "llama-3-70b-instruct"]
    assert await get_providers_for_model(pool, "anthropic/gpt-4") == []
    assert await check_model_available_on_provider(pool, "anthropic/gpt-4", "openrouter") is False


def readme_script() -> str:
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    (script,) = [block for block in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "open_catalog" in block]
    return script


def test_the_readmes_library_script_runs_as_written(fresh_database_url: str, tmp_path: Any) -> None:
    """The README's script, a process of its own: open the pool, call, close."""
    import asyncio
    import os
    import subprocess
    import sys

    async def seed() -> None:
        async with migrated_pool(fresh_database_url) as pool:
            await seed_catalog(pool)

    asyncio.run(seed())
    path = tmp_path / "script.py"
    path.write_text(readme_script())
    env = {**os.environ, "DATABASE_URL": fresh_database_url}
    done = subprocess.run([sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:4] == [
        "openrouter openai/gpt-4 healthy",
        "featherless gpt-4 healthy",
        "portkey gpt-4-0613 degraded",
        "True",
    ], done.stdout
    assert "Primary: openrouter, Fallback: featherless" in done.stdout
