"""Why a ranking is in the order it is: one sentence per offer, for `failover explain` and the admin view.

Pure, and derived from the same rules as `proxy.failover.ranking` (SPEC section 7): each offer is compared
with the one ranked just before it, and the first rule that tells them apart is the reason
(health tier, then the strategy's keys, then the provider slug as the tie-break).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from proxy.failover.ranking import RANK_KEYS, offer_health, offer_latency_ms, offer_price
from proxy.types import NO_VIEW, Health, Offer, Strategy


def health_of(offer: Offer) -> Health:
    """The health ranking uses for an offer when nothing is known beyond the catalog."""
    return offer_health(offer, NO_VIEW)


def format_latency(offer: Offer) -> str:
    latency = offer_latency_ms(offer, NO_VIEW)
    return "latency unknown" if math.isinf(latency) else f"{latency:.0f} ms"


def usd(value: float) -> str:
    """A per-token price in plain decimals (`0.00009`, not `9e-05`)."""
    return f"{value:.12f}".rstrip("0").rstrip(".") or "0"


def format_price(offer: Offer) -> str:
    price = offer_price(offer)
    return "price unknown" if math.isinf(price) else f"${usd(price)}/token (prompt + completion)"


def _short_price(offer: Offer) -> str:
    price = offer_price(offer)
    return "unknown" if math.isinf(price) else f"${usd(price)}"


def _reason(key: str, offer: Offer, before: Offer) -> str:
    if key == "priority":
        return f"provider priority {offer.priority} comes after {before.priority}"
    if key == "latency":
        return f"slower: {format_latency(offer)} vs {format_latency(before)}"
    return f"pricier: {_short_price(offer)} vs {_short_price(before)} per token (prompt + completion)"


def why_after(offer: Offer, before: Offer, strategy: Strategy) -> str:
    """Why `offer` is ranked right after `before`."""
    health, health_before = health_of(offer), health_of(before)
    if health.tier != health_before.tier:
        return f"after {before.provider_slug}: {health} ranks after {health_before}"
    for key, value in RANK_KEYS[strategy]:  # the first of ranking's own keys that tells them apart
        if value(offer, NO_VIEW) != value(before, NO_VIEW):
            return f"after {before.provider_slug}: {_reason(key, offer, before)}"
    return f"after {before.provider_slug}: equal on health, priority, latency and price; ordered by name"


def why_first(offer: Offer, strategy: Strategy) -> str:
    return (
        f"primary ({strategy} strategy): {health_of(offer)}, priority {offer.priority}, "
        f"{format_latency(offer)}, {format_price(offer)}"
    )


def explain_order(offers: Sequence[Offer], strategy: Strategy) -> list[str]:
    """One reason per offer of an already ranked sequence."""
    return [
        why_first(offer, strategy) if i == 0 else why_after(offer, offers[i - 1], strategy)
        for i, offer in enumerate(offers)
    ]
