"""Reading the catalog: the active offers of canonical models, as `proxy.types.Offer`.

`load_offers` is what the proxy's in-process cache calls: one indexed query over the
`offer_catalog` view (models joined with providers and their health tracking row). An offer is
active when its `models` row and its provider both are. Prices come back as floats (USD per token);
the capability lists (`supported_parameters`, `input_modalities`) as frozensets, NULL as None.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import asyncpg

from proxy.store.queries import query
from proxy.types import ALL_ENDPOINTS, Health, Offer


def _float(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


def _words(value: list[str] | None) -> frozenset[str] | None:
    return None if value is None else frozenset(value)


def offer_from_row(row: asyncpg.Record) -> Offer:
    """An `Offer` from a row that selects the `load_offers` columns."""
    return Offer(
        model_id=row["model_id"],
        provider_slug=row["provider_slug"],
        provider_model_id=row["provider_model_id"],
        base_url=row["base_url"],
        api_key_env=row["api_key_env"],
        priority=row["priority"],
        health=Health(row["health_status"]),
        provider_health=Health(row["provider_health_status"]),
        response_time_ms=_float(row["response_time_ms"]),
        pricing_prompt=_float(row["pricing_prompt"]),
        pricing_completion=_float(row["pricing_completion"]),
        supports_streaming=row["supports_streaming"],
        offer_id=row["offer_id"],
        endpoints=ALL_ENDPOINTS if row.get("endpoints") is None else frozenset(row["endpoints"]),
        pricing_request=_float(row["pricing_request"]),
        context_length=row["context_length"],
        max_completion_tokens=row["max_completion_tokens"],
        supported_parameters=_words(row["supported_parameters"]),
        input_modalities=_words(row["input_modalities"]),
        pricing_cached_prompt=_float(row["pricing_cached_prompt"]),
    )


async def load_offers(pool: asyncpg.Pool, model_ids: Sequence[str] | None = None) -> dict[str, list[Offer]]:
    """Every active offer, grouped by canonical model id (only `model_ids` when given).

    Offers come in a stable order (provider slug, provider model id), not ranked: ranking is
    `proxy.failover.ranking.rank_offers`, which also weighs this instance's runtime state.
    """
    if model_ids is None:
        rows = await pool.fetch(query("load_offers"))
    else:
        rows = await pool.fetch(query("load_offers_for_models"), list(model_ids))
    offers: dict[str, list[Offer]] = {}
    for row in rows:
        offers.setdefault(row["model_id"], []).append(offer_from_row(row))
    return offers


async def load_inactive_providers(pool: asyncpg.Pool) -> frozenset[str]:
    """The slugs of the providers the catalog marks inactive (`failover sync` from a config that says so)."""
    return frozenset(row["slug"] for row in await pool.fetch(query("inactive_providers")))


async def list_models(pool: asyncpg.Pool) -> list[str]:
    """The canonical ids of every model with at least one active offer, sorted."""
    return [row["model_id"] for row in await pool.fetch(query("list_models"))]
