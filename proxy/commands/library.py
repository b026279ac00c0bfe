"""The guide's library API (SPEC section 5), as async functions over an asyncpg pool.

For operators who script against the catalog. Offers are ranked by `proxy.failover.ranking.rank_offers`,
the same pure function the proxy uses, with no request preferences and no runtime state, so the
order here is the order a fresh proxy instance would try. A model id is mapped as the proxy maps a
request's (`proxy.canonical.resolve_model_id`): `openai/gpt-4` and `GPT-4` name `gpt-4`.

    async with open_catalog() as pool:                          the pool: $DATABASE_URL, else the embedded one
    get_providers_for_model(pool, model_id, active_only=True)   ranked offers, as mappings
    get_provider_model_id(pool, model_id, provider_slug)        the provider's own id, or None
    check_model_available_on_provider(pool, model_id, slug)     True when that provider serves it
    explain_failover_for_model(pool, model_id)                  the guide's explain shape
    get_usage(pool, request_id)                                 one request's usage record, or None
    get_spend(pool, since, until, group_by=("key",), key_name=None)   cost and tokens per group
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any, TypedDict

import asyncpg

from proxy.billing.usage_db import fetch_usage, spend
from proxy.canonical import resolution_candidates, resolve_model_id
from proxy.config import Secret, config_from_mapping
from proxy.failover.ranking import rank_offers
from proxy.failover.reasons import explain_order, health_of
from proxy.store.database import open_pool, require_database
from proxy.store.offers import offer_from_row
from proxy.store.queries import query
from proxy.types import Offer, Strategy


@asynccontextmanager
async def open_catalog(database_url: str | None = None) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on the catalog, closed on exit: `database_url`, else `$DATABASE_URL`, else the
    embedded database that `failover migrate` made in `$FAILOVER_DATA_DIR` (default `.failover`, from
    the current folder). Raises `proxy.errors.ConfigError` when there is no catalog to open (none of
    the three), `proxy.errors.CatalogError` when it cannot connect or was never migrated."""
    config = config_from_mapping({}, "(library)", os.environ)
    if database_url is not None:
        config = replace(config, database_url=Secret(database_url))
    require_database(config, "open_catalog")
    async with open_pool(config) as pool:
        yield pool


async def resolve_model(pool: asyncpg.Pool, model_id: str, aliases: Mapping[str, str] | None = None) -> str:
    """The canonical id `model_id` names among the active offers, as a request's `model` is mapped
    (`aliases`: the config's `[aliases]`); `model_id` itself when it names none."""
    candidates = resolution_candidates(model_id, aliases or {})
    rows = await pool.fetch(query("model_id_candidates"), list(candidates), model_id)
    canonical_ids = {row["model_id"] for row in rows}
    by_provider_id = {row["provider_model_id"].lower(): row["model_id"] for row in rows}
    return resolve_model_id(model_id, canonical_ids, by_provider_id, aliases or {}) or model_id


class OfferMapping(TypedDict):
    """One offer in the guide's shape, with what ranking used."""

    offer_id: int
    model_id: str
    provider_slug: str
    provider_model_id: str
    provider_health_status: str  # the provider's roll-up, as the guide names it
    health_status: str  # the offer's own
    effective_health: str  # what ranking used: the worse of the two
    provider_response_time_ms: float | None  # the offer's EWMA, else the provider's average
    pricing_prompt: float | None  # USD per token
    pricing_completion: float | None  # USD per token
    success_rate: float | None
    priority: int  # the provider's configured priority (lower first)
    is_active: bool


def _mapping(offer: Offer, row: asyncpg.Record) -> OfferMapping:
    return OfferMapping(
        offer_id=row["offer_id"],
        model_id=offer.model_id,
        provider_slug=offer.provider_slug,
        provider_model_id=offer.provider_model_id,
        provider_health_status=offer.provider_health.value,
        health_status=offer.health.value,
        effective_health=health_of(offer).value,
        provider_response_time_ms=offer.response_time_ms,
        pricing_prompt=offer.pricing_prompt,
        pricing_completion=offer.pricing_completion,
        success_rate=row["success_rate"],
        priority=offer.priority,
        is_active=row["offer_is_active"] and row["provider_is_active"],
    )


def _ranked(offers: list[Offer], strategy: Strategy) -> list[Offer]:
    return list(rank_offers(offers, strategy=strategy, runtime={}).offers)


async def ranked_offers(
    pool: asyncpg.Pool, model_id: str, *, active_only: bool = True, strategy: Strategy = Strategy.BALANCED
) -> list[tuple[Offer, asyncpg.Record]]:
    """The model's offers ranked, each with its catalog row; inactive ones (if asked for) come last."""
    model_id = await resolve_model(pool, model_id)
    if active_only:
        rows = await pool.fetch(query("load_offers_for_models"), [model_id])
    else:
        rows = await pool.fetch(query("all_offers_for_model"), model_id)
    by_id = {row["offer_id"]: row for row in rows}
    active = [offer_from_row(r) for r in rows if r["offer_is_active"] and r["provider_is_active"]]
    inactive = [offer_from_row(r) for r in rows if not (r["offer_is_active"] and r["provider_is_active"])]
    ordered = _ranked(active, strategy) + _ranked(inactive, strategy)
    return [(offer, by_id[offer.offer_id]) for offer in ordered]


async def get_providers_for_model(
    pool: asyncpg.Pool, model_id: str, active_only: bool = True, *, strategy: Strategy = Strategy.BALANCED
) -> list[OfferMapping]:
    """The offers of a canonical model, best first (SPEC section 7), as mappings."""
    ranked = await ranked_offers(pool, model_id, active_only=active_only, strategy=strategy)
    return [_mapping(offer, row) for offer, row in ranked]


async def get_provider_model_id(pool: asyncpg.Pool, model_id: str, provider_slug: str) -> str | None:
    """The id `provider_slug` uses for `model_id` (active offers only), or None."""
    canonical = await resolve_model(pool, model_id)
    value: str | None = await pool.fetchval(query("provider_model_id"), canonical, provider_slug)
    return value


async def check_model_available_on_provider(pool: asyncpg.Pool, model_id: str, provider_slug: str) -> bool:
    """Whether `provider_slug` has an active offer of canonical `model_id`."""
    return await get_provider_model_id(pool, model_id, provider_slug) is not None


def recommendation(order: list[Offer]) -> str:
    if not order:
        return "Model not available on any provider"
    if len(order) == 1:
        return f"Primary: {order[0].provider_slug} (no fallback available)"
    return f"Primary: {order[0].provider_slug}, Fallback: {order[1].provider_slug}"


async def explain_failover_for_model(
    pool: asyncpg.Pool, model_id: str, *, strategy: Strategy = Strategy.BALANCED
) -> dict[str, Any]:
    """The guide's shape: `model`, `providers_available`, `failover_order` (best first, each with
    `priority` = its rank from 1, the `reason` it is there, and `first_output`: the learned time to
    first output a proxy flushed last, `proxy.runtime.first_output.learned_json`, or None),
    `recommendation`."""
    model_id = await resolve_model(pool, model_id)
    ranked = await ranked_offers(pool, model_id, strategy=strategy)
    offers = [offer for offer, _ in ranked]
    reasons = explain_order(offers, strategy)
    learned = {
        (r["provider"], r["model"]): json.loads(r["first_output"])
        for r in await pool.fetch(query("first_output_for_model"), model_id)
    }
    order = [
        {
            "priority": rank,
            "provider": offer.provider_slug,
            "provider_model_id": offer.provider_model_id,
            "health": health_of(offer).value,
            "response_time_ms": offer.response_time_ms,
            "pricing_prompt": offer.pricing_prompt,
            "pricing_completion": offer.pricing_completion,
            "success_rate": row["success_rate"],
            "provider_priority": offer.priority,
            "first_output": learned.get(offer.key),  # what a proxy learned and flushed last, or None
            "reason": reason,
        }
        for rank, ((offer, row), reason) in enumerate(zip(ranked, reasons, strict=True), start=1)
    ]
    return {
        "model": model_id,
        "strategy": strategy.value,
        "providers_available": len(offers),
        "failover_order": order,
        "recommendation": recommendation(offers),
    }


async def get_usage(pool: asyncpg.Pool, request_id: str) -> dict[str, Any] | None:
    """One request's usage record (`usage_records`, keyed by the proxy's `x-request-id`) as a mapping
    of its columns (`proxy.billing.usage_record.UsageRecord`: cost and prices as `Decimal`, `attempts`
    as a list), or None when no proxy has written it (yet: within `[usage] flush_s`)."""
    record = await fetch_usage(pool, request_id)
    if record is None:
        return None
    return {**record._asdict(), "attempts": json.loads(record.attempts)}


async def get_spend(
    pool: asyncpg.Pool,
    since: datetime,
    until: datetime,
    group_by: Sequence[str] = ("key",),
    key_name: str | None = None,
) -> list[dict[str, Any]]:
    """Requests, cost (USD, `Decimal`) and tokens over [since, until) grouped by up to two of `key`,
    `model`, `provider`, `day` (`proxy.billing.usage_db.spend`); `ValueError` for another group."""
    return await spend(pool, since, until, group_by, key_name)
