"""Deriving health, as pure functions: hysteresis, latency and error thresholds, provider roll-ups."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from health.derive import (
    OfferInput,
    Signals,
    Thresholds,
    decide_round,
    derive_offer_health,
    derive_provider_health,
    mean_latency,
    success_rate,
)
from proxy.types import Health

T = Thresholds(failures_to_unhealthy=3, successes_to_healthy=2, degraded_latency_ms=1000.0, min_ratio_samples=10)
HEALTHY, DEGRADED, UNHEALTHY, UNKNOWN = Health.HEALTHY, Health.DEGRADED, Health.UNHEALTHY, Health.UNKNOWN


def failures(n: int, **kw: object) -> Signals:
    return Signals(observed=True, consecutive_failures=n, **kw)  # type: ignore[arg-type]


def successes(n: int, **kw: object) -> Signals:
    return Signals(observed=True, consecutive_successes=n, **kw)  # type: ignore[arg-type]


def test_one_error_never_flips_a_healthy_offer() -> None:
    assert derive_offer_health(HEALTHY, failures(1), T) is HEALTHY
    assert derive_offer_health(HEALTHY, failures(2), T) is HEALTHY
    assert derive_offer_health(HEALTHY, failures(3), T) is UNHEALTHY


def test_an_unhealthy_offer_needs_several_successes_to_come_back() -> None:
    assert derive_offer_health(UNHEALTHY, successes(1), T) is UNHEALTHY
    assert derive_offer_health(UNHEALTHY, successes(2), T) is HEALTHY
    assert derive_offer_health(UNHEALTHY, successes(2, latency_ms=1500.0), T) is DEGRADED


def test_unknown_until_there_is_evidence() -> None:
    assert derive_offer_health(UNKNOWN, Signals(), T) is UNKNOWN
    assert derive_offer_health(UNKNOWN, failures(2), T) is UNKNOWN
    assert derive_offer_health(UNKNOWN, failures(3), T) is UNHEALTHY
    assert derive_offer_health(UNKNOWN, successes(1), T) is HEALTHY


def test_nothing_observed_keeps_the_stored_status() -> None:
    assert derive_offer_health(DEGRADED, Signals(), T) is DEGRADED


def test_slow_offers_are_degraded_and_recover_when_fast_again() -> None:
    assert derive_offer_health(HEALTHY, successes(5, latency_ms=1000.0), T) is DEGRADED
    assert derive_offer_health(DEGRADED, successes(6, latency_ms=200.0), T) is HEALTHY


def test_recent_error_ratio_needs_enough_samples() -> None:
    mostly_failing = successes(1, recent_successes=4, recent_errors=6)
    assert derive_offer_health(HEALTHY, mostly_failing, T) is UNHEALTHY
    assert derive_offer_health(HEALTHY, successes(1, recent_successes=7, recent_errors=3), T) is DEGRADED
    assert derive_offer_health(HEALTHY, successes(1, recent_successes=1, recent_errors=2), T) is HEALTHY
    assert Signals(recent_errors=2).error_ratio(10) is None


outcomes = st.lists(st.booleans(), max_size=40)


@given(outcomes)
def test_status_follows_runs_of_outcomes_never_single_ones(run: list[bool]) -> None:
    """Feed probe outcomes one at a time, as tracking counts them: the status only turns unhealthy at the
    end of `failures_to_unhealthy` failures in a row, and only leaves unhealthy after `successes_to_healthy`."""
    health, failed, ok = UNKNOWN, 0, 0
    for index, success in enumerate(run):
        failed, ok = (0, ok + 1) if success else (failed + 1, 0)
        before = health
        health = derive_offer_health(before, Signals(True, failed, ok), T)
        if health is UNHEALTHY and before is not UNHEALTHY:
            assert run[index - 2 : index + 1] == [False] * 3
        if before is UNHEALTHY and health is not UNHEALTHY:
            assert run[index - 1 : index + 1] == [True] * 2
        if before is HEALTHY and not success:
            assert health in (HEALTHY, UNHEALTHY)
            assert health is HEALTHY or failed >= 3


def test_provider_roll_up() -> None:
    assert derive_provider_health([]) is UNKNOWN
    assert derive_provider_health([UNKNOWN, UNKNOWN]) is UNKNOWN
    assert derive_provider_health([UNHEALTHY, UNHEALTHY, UNKNOWN]) is UNHEALTHY
    assert derive_provider_health([HEALTHY, UNHEALTHY]) is HEALTHY
    assert derive_provider_health([HEALTHY, UNHEALTHY, DEGRADED]) is DEGRADED
    assert derive_provider_health([HEALTHY, HEALTHY, UNKNOWN]) is HEALTHY


def test_means_and_rates() -> None:
    assert mean_latency([None, 100.0, 300.0]) == 200.0
    assert mean_latency([None]) is None
    assert success_rate(3, 1) == 0.75
    assert success_rate(0, 0) is None


def offer(offer_id: int, model: str, provider: str, health: Health, **kw: object) -> OfferInput:
    return OfferInput(offer_id, model, provider, f"{provider}/{model}", health, observed=True, **kw)  # type: ignore[arg-type]


def test_a_round_names_the_models_whose_ranking_moved() -> None:
    inputs = [
        offer(1, "gpt-4", "a", HEALTHY, consecutive_failures=3, error_count=3, success_count=10),
        offer(2, "gpt-4", "b", HEALTHY, consecutive_successes=4, success_count=14, latency_ms=100.0),
        offer(3, "llama", "b", HEALTHY, consecutive_successes=4, success_count=14, latency_ms=300.0),
        offer(4, "mistral", "c", HEALTHY, consecutive_successes=4, success_count=4),
    ]
    decision = decide_round(inputs, {}, {"a": HEALTHY, "b": HEALTHY, "c": DEGRADED}, T)
    assert decision.by_offer() == {1: UNHEALTHY, 2: HEALTHY, 3: HEALTHY, 4: HEALTHY}
    assert decision.providers == {"a": (UNHEALTHY, None), "b": (HEALTHY, 200.0), "c": (HEALTHY, None)}
    assert decision.changed_models == {"gpt-4", "mistral"}  # mistral: its provider's roll-up moved
    assert decision.offers[0].success_rate == 10 / 13


def test_recent_outcomes_are_the_counts_added_since_the_previous_round() -> None:
    now = [offer(1, "gpt-4", "a", HEALTHY, consecutive_successes=1, success_count=104, error_count=26)]
    assert decide_round(now, {}, {}, T).by_offer() == {1: HEALTHY}  # no previous round: no ratio
    assert decide_round(now, {1: (100, 20)}, {}, T).by_offer() == {1: UNHEALTHY}  # 6 of the last 10 failed
