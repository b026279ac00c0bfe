"""Why a ranking is in the order it is: one sentence per offer, for `failover explain` and the admin view.

Pure, and derived from the same rules as `proxy.failover.ranking` (SPEC section 7): each offer is compared
with the one ranked just before it, and the first rule that tells them apart is the reason
(health tier, then the strategy's keys, then the provider slug as the tie-break).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from proxy.failover.ranking import LATENCY_BAND_MS, offer_health, offer_latency_ms, offer_price
from proxy.types import Health, Offer, RuntimeView, Strategy

_NO_VIEW = RuntimeView()
_KEYS = {
    Strategy.BALANCED: ("priority", "latency", "price"),
    Strategy.PRICE: ("price", "priority", "latency"),
    Strategy.LATENCY: ("latency", "priority", "price"),
}


def health_of(offer: Offer) -> Health:
    """The health ranking uses for an offer when nothing is known beyond the catalog."""
    return offer_health(offer, _NO_VIEW)


def format_latency(offer: Offer) -> str:
    latency = offer_latency_ms(offer, _NO_VIEW)
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


def _band(offer: Offer) -> float:
    latency = offer_latency_ms(offer, _NO_VIEW)
    return latency if math.isinf(latency) else latency // LATENCY_BAND_MS


def _compare(key: str, offer: Offer, before: Offer, strategy: Strategy) -> str | None:
    if key == "priority" and offer.priority != before.priority:
        return f"provider priority {offer.priority} comes after {before.priority}"
    if key == "latency":
        differs = (
            _band(offer) != _band(before)
            if strategy is Strategy.BALANCED
            else offer_latency_ms(offer, _NO_VIEW) != offer_latency_ms(before, _NO_VIEW)
        )
        if differs:
            return f"slower: {format_latency(offer)} vs {format_latency(before)}"
    if key == "price" and offer_price(offer) != offer_price(before):
        return f"pricier: {_short_price(offer)} vs {_short_price(before)} per token (prompt + completion)"
    return None


def why_after(offer: Offer, before: Offer, strategy: Strategy) -> str:
    """Why `offer` is ranked right after `before`."""
    health, health_before = health_of(offer), health_of(before)
    if health.tier != health_before.tier:
        return f"after {before.provider_slug}: {health} ranks after {health_before}"
    for key in _KEYS[strategy]:
        reason = _compare(key, offer, before, strategy)
        if reason:
            return f"after {before.provider_slug}: {reason}"
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
