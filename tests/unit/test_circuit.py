"""Circuit states: closed, open after the threshold, one half-open trial, closed or re-opened."""

from __future__ import annotations

from proxy.runtime.circuit import CLOSED, circuit_state, record_failure, record_success, take_trial
from proxy.types import CircuitState


def test_opens_at_threshold_not_before() -> None:
    c = CLOSED
    for _ in range(2):
        c = record_failure(c, 100.0, threshold=3)
        assert circuit_state(c, 100.0, 30.0) is CircuitState.CLOSED
    c = record_failure(c, 100.0, threshold=3)
    assert circuit_state(c, 100.0, 30.0) is CircuitState.OPEN
    assert circuit_state(c, 129.9, 30.0) is CircuitState.OPEN


def test_success_resets_the_count() -> None:
    c = record_failure(record_failure(CLOSED, 0.0, 3), 0.0, 3)
    c = record_success(c)
    c = record_failure(c, 0.0, 3)
    assert circuit_state(c, 0.0, 30.0) is CircuitState.CLOSED


def test_half_open_lets_one_trial_through() -> None:
    c = record_failure(CLOSED, 0.0, threshold=1)
    assert circuit_state(c, 31.0, 30.0) is CircuitState.HALF_OPEN
    c = take_trial(c, 31.0, 30.0)
    assert circuit_state(c, 31.5, 30.0) is CircuitState.OPEN  # others wait for the trial
    assert circuit_state(record_success(c), 32.0, 30.0) is CircuitState.CLOSED
    reopened = record_failure(c, 32.0, threshold=1)
    assert circuit_state(reopened, 32.0, 30.0) is CircuitState.OPEN
    assert circuit_state(reopened, 62.0, 30.0) is CircuitState.HALF_OPEN


def test_stale_trial_claim_expires() -> None:
    c = take_trial(record_failure(CLOSED, 0.0, threshold=1), 31.0, 30.0)
    assert circuit_state(c, 61.5, 30.0) is CircuitState.HALF_OPEN


def test_each_failed_trial_doubles_the_wait_up_to_the_cooldown() -> None:
    c = record_failure(CLOSED, 0.0, threshold=1, first_wait_s=2.0, max_wait_s=5.0)
    assert circuit_state(c, 1.9, 5.0) is CircuitState.OPEN and circuit_state(c, 2.0, 5.0) is CircuitState.HALF_OPEN
    c = record_failure(take_trial(c, 2.0, 5.0), 2.0, threshold=1, first_wait_s=2.0, max_wait_s=5.0)
    assert circuit_state(c, 5.9, 5.0) is CircuitState.OPEN and circuit_state(c, 6.0, 5.0) is CircuitState.HALF_OPEN
    c = record_failure(take_trial(c, 6.0, 5.0), 6.0, threshold=1, first_wait_s=2.0, max_wait_s=5.0)
    assert circuit_state(c, 10.9, 5.0) is CircuitState.OPEN and circuit_state(c, 11.0, 5.0) is CircuitState.HALF_OPEN
    assert record_success(c) == CLOSED
