"""Ranking offers: the pure decision of which offer to try first, second, third.

The order (SPEC section 7):
1. the request's filters (`only`, `ignore`) drop offers; an offer cooling down after a provider's
   `Retry-After` is left out (the provider asked us to stay away);
2. usable offers sort by health tier (healthy, then degraded/unknown, then unhealthy), then by the
   request's preferred order, then offers known to fit the request before those of unknown fit
   (`unknown`, from `proxy.failover.fit`), then by the strategy:
   - `balanced`: provider priority, latency in 50 ms bands (so noise does not flip the order; an
     offer not measured yet counts as fast, so it gets tried and measured), price;
   - `price`: prompt + completion price per token, then priority, then latency;
   - `latency`: latency, then priority, then price;
   and last by provider slug, so equal offers always come in the same order;
   An offer ranked down by this instance's own passive health (or half-open) whose trial request is
   due (`RuntimeView.trial_due`, `proxy.runtime.state`) is ranked by the catalog's health alone for this
   request, so that it gets its trial even while a healthier peer exists (not for a request with
   `allow_fallbacks = false`, which could not fail over if the trial failed);
3. an offer that recently timed out before its first output (`RuntimeView.slow_until`, for
   `proxy.runtime.first_output.SLOW_PENALTY_S`) comes after its peers whose circuit is closed, so the
   next request does not wait on it again;
4. offers whose circuit is open come after every other offer, in the same order among themselves:
   they get no traffic while any other offer serves, and are the last resort, not a lost request,
   when every other offer failed;
5. `allow_fallbacks = false` keeps only the offers the request named (or just the best one).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

from proxy.runtime.state import seen_health
from proxy.types import (
    NO_PREFERENCES,
    NO_VIEW,
    CircuitState,
    Health,
    Offer,
    OfferKey,
    Preferences,
    Ranking,
    RuntimeView,
    Strategy,
)

LATENCY_BAND_MS = 50.0


def offer_health(offer: Offer, view: RuntimeView) -> Health:
    """The catalog's health of an offer, made worse (never better) by what this instance saw itself."""
    return seen_health(offer.effective_health, view.passive_health)


def offer_latency_ms(offer: Offer, view: RuntimeView) -> float:
    """This instance's own EWMA when it has one, else the catalog's; unknown sorts after known."""
    if view.latency_ms is not None:
        return view.latency_ms
    return offer.response_time_ms if offer.response_time_ms is not None else math.inf


def offer_price(offer: Offer) -> float:
    if offer.pricing_prompt is None and offer.pricing_completion is None:
        return math.inf
    return (offer.pricing_prompt or 0.0) + (offer.pricing_completion or 0.0)


def offer_priority(offer: Offer, view: RuntimeView) -> float:
    return float(offer.priority)


def offer_latency_band(offer: Offer, view: RuntimeView) -> float:
    """Latency in `LATENCY_BAND_MS` bands; an offer not measured yet counts as fast (band 0)."""
    latency = offer_latency_ms(offer, view)
    return 0.0 if math.isinf(latency) else float(latency // LATENCY_BAND_MS)


def _price(offer: Offer, view: RuntimeView) -> float:
    return offer_price(offer)


RankKey = tuple[str, Callable[[Offer, RuntimeView], float]]
RANK_KEYS: Mapping[Strategy, tuple[RankKey, ...]] = {
    Strategy.BALANCED: (("priority", offer_priority), ("latency", offer_latency_band), ("price", _price)),
    Strategy.PRICE: (("price", _price), ("priority", offer_priority), ("latency", offer_latency_ms)),
    Strategy.LATENCY: (("latency", offer_latency_ms), ("priority", offer_priority), ("price", _price)),
}
"""Each strategy's sort keys after the health tier and the request's preferred order, most
significant first: `rank_offers` sorts by them and `proxy.failover.reasons` names the first that
tells two offers apart."""


def _strategy_key(offer: Offer, view: RuntimeView, strategy: Strategy) -> tuple[float, ...]:
    return tuple(value(offer, view) for _, value in RANK_KEYS[strategy])


def _sorted(offers: list[Offer], key: Callable[[Offer], tuple[object, ...]]) -> list[Offer]:
    return sorted(offers, key=key) if len(offers) > 1 else offers  # one offer: nothing to weigh


def _allowed(offers: Iterable[Offer], prefs: Preferences) -> list[Offer]:
    return [
        o
        for o in offers
        if (prefs.only is None or o.provider_slug in prefs.only) and o.provider_slug not in prefs.ignore
    ]


def rank_offers(
    offers: Sequence[Offer],
    *,
    strategy: Strategy = Strategy.BALANCED,
    prefs: Preferences = NO_PREFERENCES,
    runtime: Mapping[OfferKey, RuntimeView] | None = None,
    now: float = 0.0,
    unknown: frozenset[OfferKey] = frozenset(),
) -> Ranking:
    """Order `offers` for one request. `runtime` maps offer keys to this instance's view; `now` is the
    monotonic clock the cooldowns were written in; `unknown` names offers whose fit is unknown."""
    views = runtime or {}
    strategy = prefs.sort or strategy
    order = {slug: i for i, slug in enumerate(prefs.order)}

    trials = prefs.allow_fallbacks  # a request that cannot fail over is never a trial

    def key(offer: Offer) -> tuple[object, ...]:
        view = views.get(offer.key, NO_VIEW)
        health = offer.effective_health if trials and view.trial_due else offer_health(offer, view)
        return (
            health.tier,
            order.get(offer.provider_slug, len(order)),
            offer.key in unknown,
            *_strategy_key(offer, view, strategy),
            offer.provider_slug,
            offer.provider_model_id,
        )

    candidates = _allowed(offers, prefs)
    cooling = [o for o in candidates if views.get(o.key, NO_VIEW).cooldown_until > now]
    live = [o for o in candidates if views.get(o.key, NO_VIEW).cooldown_until <= now]
    closed = [o for o in live if views.get(o.key, NO_VIEW).circuit is not CircuitState.OPEN]
    opened = [o for o in live if views.get(o.key, NO_VIEW).circuit is CircuitState.OPEN]
    slow = [o for o in closed if views.get(o.key, NO_VIEW).slow_until > now]
    if slow:
        closed = [o for o in closed if views.get(o.key, NO_VIEW).slow_until <= now]
    usable = _sorted(closed, key) + _sorted(slow, key) + _sorted(opened, key)
    if not prefs.allow_fallbacks:
        named = [o for o in usable if o.provider_slug in order]
        usable = named if prefs.order else usable[:1]
    retry_after = None
    if not usable and cooling:
        retry_after = max(0.0, min(views[o.key].cooldown_until for o in cooling) - now)
    return Ranking(offers=tuple(usable), cooling=tuple(cooling), retry_after_s=retry_after)
