"""Runtime state: the passive-health window's running failure count agrees with a full scan."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proxy.config import HealthSettings, ProxySettings
from proxy.runtime.state import WINDOW_SIZE, OfferState, RuntimeState, passive_health
from proxy.types import Health, Offer

HEALTH = HealthSettings()
OFFER = Offer("gpt-4", "a", "a/gpt-4", "http://a", "")


@given(st.lists(st.booleans(), max_size=3 * WINDOW_SIZE))
def test_running_failure_count_matches_a_full_scan(outcomes: list[bool]) -> None:
    state = OfferState()
    for i, ok in enumerate(outcomes):
        state.observe(float(i), ok)
        assert state.window_failures == [ok for _, ok in state.window].count(False)
        assert state.passive_health(float(i), HEALTH) == passive_health(state.window, float(i), HEALTH)


def test_failures_make_an_offer_unhealthy_and_a_minute_forgets_them() -> None:
    runtime = RuntimeState(ProxySettings(circuit_failure_threshold=100))
    for i in range(4):
        runtime.record_failure(OFFER, "500", 100.0 + i)
    assert runtime.view(OFFER, 104.0).passive_health is Health.UNHEALTHY
    assert runtime.view(OFFER, 170.0).passive_health is Health.UNKNOWN
    for i in range(12):
        runtime.record_success(OFFER, 5.0, 105.0 + i)
    assert runtime.view(OFFER, 117.0).passive_health is Health.DEGRADED  # 4 of 16 failed
