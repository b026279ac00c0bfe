"""A reload builds one snapshot of the config and swaps one reference; everything reads through it."""

from __future__ import annotations

from typing import Any

from proxy.config import config_from_mapping
from proxy.http.gateway import Gateway
from tests.unit.fake_upstream import FakeUpstream

KEYS = {"A_KEY": "sk-a-very-secret-key", "FAILOVER_API_KEYS": "client-key-one-1234"}


def config(**proxy: Any) -> Any:
    data = {
        "proxy": proxy,
        "providers": [{"slug": "a", "name": "A", "base_url": "http://a/v1", "api_key_env": "A_KEY", "listing": "none"}],
        "models": [
            {"model_id": "gpt-4", "offers": [{"provider": "a", "provider_model_id": "a/gpt-4"}], "fallbacks": ["gpt-4o"]},
            {"model_id": "gpt-4o", "offers": [{"provider": "a", "provider_model_id": "a/gpt-4o"}], "hedge": True},
        ],
    }
    return config_from_mapping(data, "(unit)", KEYS)


def test_a_reload_swaps_the_snapshot_and_every_reader_sees_the_new_one() -> None:
    gw = Gateway(config(circuit_cooldown_s=30, response_pin_ttl_s=600, max_attempts=3), client=FakeUpstream({}))
    before = gw.live.current
    line = gw.reload(config(circuit_cooldown_s=5, response_pin_ttl_s=60, max_attempts=2, hedge=True))
    after = gw.live.current
    assert after is not before and before.settings.max_attempts == 3  # the old snapshot is untouched
    assert after.settings.max_attempts == 2 and gw.settings is after.settings
    assert gw.state.settings.circuit_cooldown_s == 5  # the runtime state reads through the reference
    assert gw.pins.ttl_s == 60
    assert after.hedge_rule("gpt-4").enabled and not before.hedge_rule("gpt-4").enabled
    assert after.fallbacks["gpt-4"] == ("gpt-4o",)
    assert "max_attempts (3 -> 2)" in line


def test_the_snapshot_shows_no_secret_in_its_repr() -> None:
    live = Gateway(config(), client=FakeUpstream({})).live.current
    assert live.client_keys == (b"client-key-one-1234",) and live.secrets == (b"sk-a-very-secret-key",)
    text = repr(live)
    assert "sk-a-very-secret-key" not in text and "client-key-one-1234" not in text
