"""Ranking is pure: offers in, order out. These are the rules of SPEC section 7, one test each."""

from __future__ import annotations

from proxy.failover.ranking import rank_offers
from proxy.types import CircuitState, Health, Offer, Preferences, RuntimeView, Strategy


def offer(slug: str, **kw: object) -> Offer:
    base: dict[str, object] = {
        "model_id": "gpt-4",
        "provider_slug": slug,
        "provider_model_id": f"{slug}/gpt-4",
        "base_url": f"http://{slug}",
        "api_key_env": "",
    }
    base.update(kw)
    return Offer(**base)  # type: ignore[arg-type]


def slugs(offers: tuple[Offer, ...]) -> list[str]:
    return [o.provider_slug for o in offers]


def test_healthy_before_degraded_and_unknown_before_unhealthy() -> None:
    offers = [
        offer("a", health=Health.UNHEALTHY),
        offer("b", health=Health.UNKNOWN),
        offer("c", health=Health.HEALTHY),
        offer("d", health=Health.DEGRADED, priority=-1),
    ]
    assert slugs(rank_offers(offers).offers) == ["c", "d", "b", "a"]


def test_provider_roll_up_makes_an_offer_unhealthy() -> None:
    offers = [offer("a", health=Health.HEALTHY, provider_health=Health.UNHEALTHY), offer("b")]
    assert slugs(rank_offers(offers).offers) == ["b", "a"]


def test_passive_health_seen_here_counts_at_once() -> None:
    offers = [offer("a", health=Health.HEALTHY), offer("b", health=Health.HEALTHY, priority=5)]
    views = {("a", "a/gpt-4"): RuntimeView(passive_health=Health.UNHEALTHY)}
    assert slugs(rank_offers(offers, runtime=views).offers) == ["b", "a"]


def test_balanced_is_priority_then_latency_band_then_price() -> None:
    offers = [
        offer("slow", response_time_ms=900.0, pricing_prompt=1e-6),
        offer("fast", response_time_ms=100.0, pricing_prompt=1e-5),
        offer("fast-cheap", response_time_ms=110.0, pricing_prompt=1e-6),
        offer("backup", priority=1, response_time_ms=1.0),
    ]
    assert slugs(rank_offers(offers).offers) == ["fast-cheap", "fast", "slow", "backup"]


def test_balanced_gives_an_unmeasured_offer_a_chance() -> None:
    offers = [offer("measured", response_time_ms=20.0), offer("new"), offer("slow", response_time_ms=400.0)]
    assert slugs(rank_offers(offers).offers) == ["measured", "new", "slow"]
    assert slugs(rank_offers(offers, strategy=Strategy.LATENCY).offers) == ["measured", "slow", "new"]


def test_price_and_latency_strategies() -> None:
    offers = [
        offer("cheap", pricing_prompt=1e-7, pricing_completion=1e-7, response_time_ms=800.0),
        offer("quick", pricing_prompt=1e-5, pricing_completion=1e-5, response_time_ms=50.0),
        offer("unpriced", response_time_ms=10.0),
    ]
    assert slugs(rank_offers(offers, strategy=Strategy.PRICE).offers) == ["cheap", "quick", "unpriced"]
    assert slugs(rank_offers(offers, strategy=Strategy.LATENCY).offers) == ["unpriced", "quick", "cheap"]
    by_sort = rank_offers(offers, strategy=Strategy.LATENCY, prefs=Preferences(sort=Strategy.PRICE))
    assert slugs(by_sort.offers) == ["cheap", "quick", "unpriced"]


def test_own_latency_ewma_beats_catalog_latency() -> None:
    offers = [offer("a", response_time_ms=10.0), offer("b", response_time_ms=400.0)]
    views = {("a", "a/gpt-4"): RuntimeView(latency_ms=900.0)}
    assert slugs(rank_offers(offers, runtime=views).offers) == ["b", "a"]


def test_preference_order_within_a_health_tier() -> None:
    offers = [offer("a"), offer("b"), offer("c", health=Health.UNHEALTHY)]
    ranked = rank_offers(offers, prefs=Preferences(order=("c", "b")))
    assert slugs(ranked.offers) == ["b", "a", "c"]


def test_only_ignore_and_no_fallbacks() -> None:
    offers = [offer("a"), offer("b"), offer("c")]
    assert slugs(rank_offers(offers, prefs=Preferences(only=frozenset({"b", "c"}))).offers) == ["b", "c"]
    assert slugs(rank_offers(offers, prefs=Preferences(ignore=frozenset({"a"}))).offers) == ["b", "c"]
    pinned = Preferences(order=("c", "b"), allow_fallbacks=False)
    assert slugs(rank_offers(offers, prefs=pinned).offers) == ["c", "b"]
    assert slugs(rank_offers(offers, prefs=Preferences(allow_fallbacks=False)).offers) == ["a"]


def test_cooling_offers_are_left_out_and_retry_after_is_the_soonest() -> None:
    offers = [offer("a"), offer("b")]
    views = {
        ("a", "a/gpt-4"): RuntimeView(cooldown_until=130.0),
        ("b", "b/gpt-4"): RuntimeView(cooldown_until=112.5),
    }
    ranked = rank_offers(offers, runtime=views, now=100.0)
    assert ranked.offers == ()
    assert slugs(ranked.cooling) == ["a", "b"]
    assert ranked.retry_after_s == 12.5
    assert slugs(rank_offers(offers, runtime=views, now=120.0).offers) == ["b"]


def test_open_circuits_go_last_as_a_last_resort() -> None:
    offers = [offer("a"), offer("b", priority=1), offer("c", priority=2)]
    one_open = {("a", "a/gpt-4"): RuntimeView(circuit=CircuitState.OPEN)}
    assert slugs(rank_offers(offers, runtime=one_open).offers) == ["b", "c", "a"]
    all_open = {o.key: RuntimeView(circuit=CircuitState.OPEN) for o in offers}
    assert slugs(rank_offers(offers, runtime=all_open).offers) == ["a", "b", "c"]
    half = {("a", "a/gpt-4"): RuntimeView(circuit=CircuitState.HALF_OPEN)}
    assert slugs(rank_offers(offers, runtime=half).offers) == ["a", "b", "c"]


def test_every_offer_unhealthy_still_tries_the_best() -> None:
    offers = [offer("a", health=Health.UNHEALTHY, priority=2), offer("b", health=Health.UNHEALTHY)]
    assert slugs(rank_offers(offers).offers) == ["b", "a"]


def test_an_offer_ranked_down_by_this_instance_gets_its_place_back_for_a_trial() -> None:
    """A way back after a blip: a trial request ranks the offer by the catalog's health alone."""
    offers = [offer("a", health=Health.HEALTHY), offer("b", health=Health.HEALTHY, priority=1)]
    demoted = RuntimeView(passive_health=Health.DEGRADED)
    assert slugs(rank_offers(offers, runtime={("a", "a/gpt-4"): demoted}).offers) == ["b", "a"]
    trial = RuntimeView(passive_health=Health.DEGRADED, trial_due=True)
    assert slugs(rank_offers(offers, runtime={("a", "a/gpt-4"): trial}).offers) == ["a", "b"]
    half_open = RuntimeView(passive_health=Health.UNHEALTHY, circuit=CircuitState.HALF_OPEN, trial_due=True)
    assert slugs(rank_offers(offers, runtime={("a", "a/gpt-4"): half_open}).offers) == ["a", "b"]
    alone = Preferences(allow_fallbacks=False)  # a request that cannot fail over is never a trial
    assert slugs(rank_offers(offers, prefs=alone, runtime={("a", "a/gpt-4"): trial}).offers) == ["b"]
    worker_says = [offer("a", health=Health.UNHEALTHY), offer("b", health=Health.HEALTHY, priority=1)]
    assert slugs(rank_offers(worker_says, runtime={("a", "a/gpt-4"): trial}).offers) == ["b", "a"]  # not ours to undo
