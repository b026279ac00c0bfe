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


OTHER_MODEL = Offer("llama", "a", "a/llama", "http://a", "")


def test_an_account_failure_cools_every_offer_of_the_provider_and_tells_the_others() -> None:
    events = []
    runtime = RuntimeState(ProxySettings(account_cooldown_s=300, first_byte_timeout_s=10), publish=events.append)
    runtime.cool_provider("a", 1000.0)
    assert runtime.view(OFFER, 1000.0).cooldown_until == 1300.0
    assert runtime.view(OTHER_MODEL, 1000.0).cooldown_until == 1300.0  # another model of the same provider
    assert [(e.kind, e.provider, e.provider_model_id, e.until) for e in events] == [("cooldown", "a", "", 1300.0)]
    peer = RuntimeState(ProxySettings())
    peer.set_cooldown(("a", ""), 1300.0)  # how a peer applies the event
    assert peer.view(OTHER_MODEL, 1000.0).cooldown_until == 1300.0


def test_after_the_account_cooldown_one_trial_rechecks_the_provider() -> None:
    runtime = RuntimeState(ProxySettings(account_cooldown_s=300, first_byte_timeout_s=10))
    runtime.cool_provider("a", 1000.0)
    runtime.take(OFFER, 1301.0)  # the cooldown is over: this request is the trial
    assert runtime.view(OTHER_MODEL, 1301.0).cooldown_until == 1311.0  # the others wait for its answer
    runtime.record_success(OFFER, 5.0, 1302.0)
    assert runtime.view(OTHER_MODEL, 1302.0).cooldown_until == 0.0


def test_a_demoted_offer_gets_a_bounded_trickle_of_trials_and_a_good_one_brings_it_back() -> None:
    runtime = RuntimeState(ProxySettings(circuit_failure_threshold=100, trial_interval_s=2.0))
    healthy = Offer("gpt-4", "a", "a/gpt-4", "http://a", "", health=Health.HEALTHY)
    for i in range(4):
        runtime.record_failure(healthy, "500", 100.0 + i * 0.1)
    view = runtime.view(healthy, 100.4)
    assert view.passive_health is Health.UNHEALTHY and not view.trial_due  # its last attempt was just now
    assert runtime.view(healthy, 102.3).trial_due
    runtime.take(healthy, 102.3)  # the trial is handed out...
    assert not runtime.view(healthy, 102.4).trial_due  # ...once per interval
    runtime.record_failure(healthy, "500", 102.4)  # still down
    assert not runtime.view(healthy, 104.0).trial_due and runtime.view(healthy, 104.4).trial_due
    runtime.take(healthy, 104.4)
    runtime.record_success(healthy, 5.0, 104.5)  # it recovered: what ranked it down is forgotten
    assert runtime.view(healthy, 104.5).passive_health is Health.UNKNOWN


def test_a_success_outside_a_trial_does_not_wipe_what_was_seen() -> None:
    runtime = RuntimeState(ProxySettings(circuit_failure_threshold=100, trial_interval_s=2.0))
    for i in range(4):
        runtime.record_failure(OFFER, "500", 100.0 + i)
    runtime.record_success(OFFER, 5.0, 104.0)  # served as a last resort: not taken as a trial
    assert runtime.view(OFFER, 104.0).passive_health is Health.UNHEALTHY


def test_an_open_circuit_is_tried_soon_then_less_often() -> None:
    runtime = RuntimeState(ProxySettings(circuit_failure_threshold=1, trial_interval_s=2.0, circuit_cooldown_s=30.0))
    runtime.record_failure(OFFER, "500", 100.0)
    assert runtime.circuit(OFFER.key, 101.9).value == "open"
    assert runtime.circuit(OFFER.key, 102.0).value == "half_open" and runtime.view(OFFER, 102.0).trial_due
    runtime.take(OFFER, 102.0)
    runtime.record_failure(OFFER, "500", 102.1)  # the trial failed: twice as long before the next
    assert runtime.circuit(OFFER.key, 106.0).value == "open"
    assert runtime.circuit(OFFER.key, 106.1).value == "half_open"
    runtime.take(OFFER, 106.1)
    runtime.record_success(OFFER, 5.0, 106.2)
    assert runtime.circuit(OFFER.key, 106.2).value == "closed"
