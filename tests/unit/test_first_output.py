"""The learned first-output times are pure: samples in, quantiles, deadlines and hedge delays out."""

from __future__ import annotations

import pytest

from proxy.failover.hedge import BUDGET_CAP, HedgeBudget
from proxy.failover.ranking import rank_offers
from proxy.runtime.first_output import (
    BUCKET_RATIO,
    DEADLINE_FLOOR_S,
    DEADLINE_MULTIPLE,
    DECAY_AT,
    MIN_SAMPLES,
    FirstOutputHistogram,
    FirstOutputTimes,
    hedge_delay_s,
    learned_deadline_s,
)
from proxy.types import Attempt, Offer, RuntimeView

KEY = ("a", "a/gpt-4")


def histogram(*samples: float) -> FirstOutputHistogram:
    h = FirstOutputHistogram()
    for s in samples:
        h.record(s)
    return h


def test_a_quantile_errs_long_by_at_most_one_bucket() -> None:
    h = histogram(*[0.05] * 50, *[2.0] * 50)
    assert 0.05 <= h.quantile(0.5) < 0.05 * BUCKET_RATIO
    assert 2.0 <= h.quantile(0.9) < 2.0 * BUCKET_RATIO
    assert FirstOutputHistogram().quantile(0.9) == 0.0


def test_too_few_samples_keep_the_configured_timeout_and_no_hedge() -> None:
    h = histogram(*[0.05] * (MIN_SAMPLES - 1))
    assert learned_deadline_s(h, 60.0) == 60.0
    assert hedge_delay_s(h) is None
    assert learned_deadline_s(None, 60.0) == 60.0
    h.record(0.05)
    assert learned_deadline_s(h, 60.0) == DEADLINE_FLOOR_S
    assert hedge_delay_s(h) == pytest.approx(0.05, rel=BUCKET_RATIO - 1)


def test_the_deadline_is_a_multiple_of_the_p99_never_above_the_configured_timeout() -> None:
    slow = histogram(*[2.0] * 30)
    assert DEADLINE_MULTIPLE * 2.0 <= learned_deadline_s(slow, 60.0) < DEADLINE_MULTIPLE * 2.0 * BUCKET_RATIO
    assert learned_deadline_s(slow, 4.0) == 4.0
    # one slow answer in a hundred is inside the p99: the deadline makes room for it
    mostly_fast = histogram(*[0.1] * 98, 3.0, 3.0)
    assert learned_deadline_s(mostly_fast, 60.0) >= DEADLINE_MULTIPLE * 3.0


def test_hedge_delay_is_the_p90() -> None:
    h = histogram(*[0.05] * 91, *[2.0] * 9)  # slow 9 % of the time: hedging starts before the slow mode
    delay = hedge_delay_s(h)
    assert delay is not None and delay < 0.1


def test_recent_samples_weigh_most() -> None:
    h = histogram(*[0.05] * int(DECAY_AT - 1))
    for _ in range(int(DECAY_AT)):
        h.record(1.0)
    assert h.weight < DECAY_AT
    assert h.quantile(0.5) >= 1.0  # the old fast history was halved away


def test_streams_and_whole_answers_are_learned_apart() -> None:
    times = FirstOutputTimes()
    for _ in range(MIN_SAMPLES):
        times.record(KEY, True, 0.05)
        times.record(KEY, False, 8.0)
    assert times.deadline_s(KEY, True, 60.0) == DEADLINE_FLOOR_S
    assert times.deadline_s(KEY, False, 60.0) >= DEADLINE_MULTIPLE * 8.0
    learned = times.learned(KEY, True, 60.0)
    assert learned.samples == MIN_SAMPLES and learned.first_output_s is not None
    assert times.learned(("b", "b/gpt-4"), True, 60.0).deadline_s == 60.0


def test_a_timed_out_offer_ranks_behind_its_peers_until_the_penalty_ends() -> None:
    a = Offer("gpt-4", "a", "a/gpt-4", "http://a", "", priority=0)
    b = Offer("gpt-4", "b", "b/gpt-4", "http://b", "", priority=5)
    slow = {a.key: RuntimeView(slow_until=110.0)}
    assert [o.provider_slug for o in rank_offers([a, b], runtime=slow, now=100.0).offers] == ["b", "a"]
    assert [o.provider_slug for o in rank_offers([a, b], runtime=slow, now=111.0).offers] == ["a", "b"]


def test_the_hedge_budget_is_a_share_of_requests() -> None:
    budget = HedgeBudget(0.1)
    granted = 0
    for _ in range(100):
        budget.deposit()
        granted += budget.take()
    assert granted == 10  # every request wanted a hedge: one in ten got it


def test_a_quiet_model_saves_up_at_most_the_cap() -> None:
    budget = HedgeBudget(0.5)
    for _ in range(1000):
        budget.deposit()
    assert sum(budget.take() for _ in range(100)) == BUDGET_CAP


def test_a_hedge_attempt_says_so_in_the_attempts_list() -> None:
    plain = Attempt("a", "a/gpt-4", "cancelled", 12.345)
    hedge = Attempt("b", "b/gpt-4", "ok", 20.0, hedge=True)
    assert "hedge" not in plain.as_json()
    assert hedge.as_json("gpt-4") == {
        "model": "gpt-4",
        "provider": "b",
        "provider_model_id": "b/gpt-4",
        "status": "ok",
        "elapsed_ms": 20.0,
        "hedge": True,
    }
