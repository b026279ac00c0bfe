"""Shared state through Redis: a cooldown or an opened circuit seen by one proxy instance makes every
instance skip that offer at once; with Redis gone each instance carries on alone, then reconnects."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest

from proxy.config import ProxySettings, Secret
from proxy.mock.testing import refused_url
from proxy.runtime.sharing.peers import SharedState
from proxy.runtime.state import RuntimeState
from proxy.store.wire import (
    RankingEvent,
    decode_cached_offers,
    decode_ranking_event,
    decode_state_event,
    encode_cached_offers,
    encode_ranking_event,
    encode_state_event,
    offer_to_json,
)
from proxy.types import Health, Offer, StateEvent
from tests.health_helpers import health_config, own_valkey, wait_until

BODY = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}


def test_events_survive_the_wire_and_bad_ones_are_refused() -> None:
    event = StateEvent("cooldown", "a", "a/gpt-4", 1234.5)
    assert decode_state_event(encode_state_event(event, "me")) == (event, "me")
    ranking = RankingEvent(("gpt-4", "llama"), 99.0)
    assert decode_ranking_event(encode_ranking_event(ranking)) == ranking
    big = RankingEvent(tuple(f"model-{i}" for i in range(2000)), 1.0)
    assert decode_ranking_event(encode_ranking_event(big, limit=7900)) == RankingEvent(None, 1.0)
    offer = Offer("gpt-4", "a", "a/gpt-4", "http://x/v1", "A_KEY", health=Health.UNHEALTHY, pricing_prompt=1e-6)
    assert decode_cached_offers(encode_cached_offers([offer], 5.0)) == ([offer], 5.0)
    for bad in (b"nope", b"[]", b'{"kind": "explode", "provider": "a", "provider_model_id": "", "until": 1, "origin": "x"}'):
        with pytest.raises(ValueError):
            decode_state_event(bad)
    with pytest.raises(ValueError):
        decode_ranking_event(b'{"models": [1], "version": 1}')
    with pytest.raises(ValueError):
        decode_cached_offers(b'{"version": 1, "offers": [{"model_id": "x"}]}')


def test_the_outbox_sends_only_what_is_still_in_force() -> None:
    state = RuntimeState(ProxySettings())
    shared = SharedState(Secret("redis://127.0.0.1:1"), "p", state, on_rankings=lambda _: None)
    now = time.time()
    events = [
        StateEvent("cooldown", "a", "a/m", now - 1),  # over
        StateEvent("cooldown", "a", "a/m", now + 5),
        StateEvent("circuit_open", "a", "", now - 10),  # still before its half-open trial
        StateEvent("circuit_open", "b", "b/m", now - 40),  # over
    ]
    for event in events:
        shared.publish(event)  # no I/O: Redis is never reached here
    assert shared.fresh_events(now) == [events[1], events[2]]
    assert shared.fresh_events(now) == []


def chat(proxy: Any) -> httpx.Response:
    response = httpx.post(f"{proxy.url}/chat/completions", json=BODY, timeout=10)
    assert response.status_code == 200, response.text
    return response


def served(response: httpx.Response) -> tuple[str, str]:
    return response.headers["x-gatewayz-provider"], response.headers["x-gatewayz-attempts"]


def two_instances(proxy_server: Any, providers: list[tuple[str, str]], redis_url: str, prefix: str, **proxy: Any) -> tuple[Any, Any]:
    env = {"REDIS_URL": redis_url, "FAILOVER_REDIS_PREFIX": prefix}
    config = health_config(providers, env=env, proxy=proxy or None)
    first, second = proxy_server(config), proxy_server(config)
    for instance in (first, second):
        wait_until(lambda i=instance: i.gateway.redis_status == "ok")
    return first, second


def cooling(proxy: Any, key: tuple[str, str]) -> bool:
    offer = proxy.gateway.state.offers.get(key)
    return offer is not None and offer.cooldown_until > time.time()


def test_a_cooldown_seen_by_one_instance_makes_another_skip_that_provider(
    mock_provider: Any, proxy_server: Any, redis_server_url: str, redis_prefix: str
) -> None:
    a, b = mock_provider("a", fault="rate_limit", retry_after="30"), mock_provider("b")
    first, second = two_instances(proxy_server, [("a", a.url), ("b", b.url)], redis_server_url, redis_prefix)
    assert served(chat(first)) == ("b", "2")  # a answered 429 with Retry-After: 30
    wait_until(lambda: cooling(second, ("a", "a/gpt-4")))
    assert served(chat(second)) == ("b", "1")
    assert a.stats()["requests"] == 1
    assert second.gateway.shared.received == 1 and first.gateway.shared.received == 0
    late = proxy_server(first.config)  # an instance that starts afterwards catches up on connecting
    wait_until(lambda: late.gateway.redis_status == "ok")
    assert cooling(late, ("a", "a/gpt-4"))
    assert served(chat(late)) == ("b", "1")
    assert a.stats()["requests"] == 1


def test_a_circuit_opened_by_one_instance_is_open_on_every_instance(
    mock_provider: Any, proxy_server: Any, redis_server_url: str, redis_prefix: str
) -> None:
    b = mock_provider("b")
    providers = [("a", refused_url()), ("b", b.url)]
    first, second = two_instances(proxy_server, providers, redis_server_url, redis_prefix, circuit_failure_threshold=1)
    assert served(chat(first)) == ("b", "2")  # a refused the connection: its circuit (and its provider's) opened
    wait_until(lambda: second.gateway.shared.received >= 2)
    offer = second.gateway.catalog.lookup("gpt-4")[0]
    assert offer.provider_slug == "a" and second.gateway.state.circuit_open(offer, time.time())
    assert served(chat(second)) == ("b", "1")


def test_with_redis_down_each_instance_serves_alone_then_reconnects(mock_provider: Any, proxy_server: Any) -> None:
    a, b = mock_provider("a"), mock_provider("b")
    with own_valkey() as valkey:
        port = valkey.port
        first, second = two_instances(proxy_server, [("a", a.url), ("b", b.url)], valkey.connection_url, "gwtest")
        valkey.stop()
        for instance in (first, second):
            wait_until(lambda i=instance: i.gateway.redis_status == "unreachable")
            ready = httpx.get(f"{instance.base}/readyz").json()
            assert (ready["status"], ready["redis"], ready["database"]) == ("degraded", "unreachable", "not_configured")
            assert httpx.get(f"{instance.base}/healthz").status_code == 200
            for _ in range(10):
                assert served(chat(instance)) == ("a", "1")

        a.set_faults(fault="rate_limit", retry_after="30")
        assert served(chat(first)) == ("b", "2")  # cooled down in first's own memory meanwhile
        assert served(chat(first)) == ("b", "1")

        with own_valkey(port) as again:
            assert again.port == port
            for instance in (first, second):
                wait_until(lambda i=instance: i.gateway.redis_status == "ok", timeout=15)
                assert httpx.get(f"{instance.base}/readyz").json()["redis"] == "ok"
            # the cooldown set while Redis was down reached the other instance once it was back
            wait_until(lambda: cooling(second, ("a", "a/gpt-4")))
            assert served(chat(second)) == ("b", "1")


def test_without_redis_a_cooldown_reaches_the_other_instance_through_postgres(
    mock_provider: Any, proxy_server: Any, fresh_database_url: str
) -> None:
    a, b = mock_provider("a", fault="rate_limit", retry_after="30"), mock_provider("b")
    config = health_config([("a", a.url), ("b", b.url)], env={"DATABASE_URL": fresh_database_url})
    first, second = proxy_server(config), proxy_server(config)
    for instance in (first, second):
        wait_until(lambda i=instance: i.gateway.listener.listening and i.gateway.database_status == "ok")
    assert served(chat(first)) == ("b", "2")  # a answered 429 with Retry-After: 30
    wait_until(lambda: cooling(second, ("a", "a/gpt-4")))
    assert served(chat(second)) == ("b", "1")
    assert a.stats()["requests"] == 1
    assert second.gateway.pg_peers.received == 1 and first.gateway.pg_peers.received == 0


def test_cached_offers_keep_their_capabilities_and_old_entries_read_as_unknown() -> None:
    offer = Offer(
        "gpt-4", "a", "a/gpt-4", "http://a", "A_KEY", context_length=128000, max_completion_tokens=16384,
        supported_parameters=frozenset({"tools", "seed"}), input_modalities=frozenset({"text", "image"}),
        pricing_request=0.0,
    )
    [back], _ = decode_cached_offers(encode_cached_offers([offer], 1.0))
    assert back == offer
    old = {k: v for k, v in offer_to_json(offer).items() if k not in ("context_length", "supported_parameters")}
    [read], _ = decode_cached_offers(orjson.dumps({"version": 1.0, "offers": [old]}))
    assert (read.context_length, read.supported_parameters, read.max_completion_tokens) == (None, None, 16384)
    bad = {**offer_to_json(offer), "supported_parameters": "tools"}
    with pytest.raises(ValueError, match="capability list"):
        decode_cached_offers(orjson.dumps({"version": 1.0, "offers": [bad]}))
