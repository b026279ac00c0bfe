"""The tail, end to end: learned first-output deadlines, the slow penalty and hedged requests.

The official openai SDK -> the proxy on a socket -> mock providers on loopback. Each test first gives
offer `a` a history of fast answers (the mocks answer within milliseconds), then makes it hang or slow.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from proxy.cli import main
from proxy.config import Config, config_from_mapping
from proxy.mock.testing import MockProvider
from proxy.runtime.first_output import DEADLINE_FLOOR_S, MIN_SAMPLES
from tests.harness import CapturedLogs, ProxyServer
from tests.health_helpers import eventually, health_config, sync, tracking, wait_until

MESSAGES: Any = [{"role": "user", "content": "hello"}]
ENV = {
    "A_API_KEY": "sk-test-aaaaaaaaaaaaaaaaaaaaaaaa",
    "B_API_KEY": "sk-test-bbbbbbbbbbbbbbbbbbbbbbbb",
    "FAILOVER_ADMIN_TOKEN": "admin-token-tttttttttttttttt",
}
ADMIN = {"authorization": f"Bearer {ENV['FAILOVER_ADMIN_TOKEN']}"}
# the configured timeout is the product's default: a hang must not cost anywhere near it
SLOW_DEFAULTS = {"first_byte_timeout_s": 60, "deadline_s": 120}


def client(proxy: ProxyServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url, api_key="client-key", max_retries=0, timeout=90)


def ask(proxy: ProxyServer, *, stream: bool, **kw: Any) -> tuple[str, dict[str, str], float]:
    """One request; (the answer's text, its headers, seconds until the answer was complete)."""
    started = time.perf_counter()
    api = client(proxy).chat.completions.with_raw_response
    raw = api.create(model="gpt-4", messages=MESSAGES, stream=stream, **kw)
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        text = raw.parse().choices[0].message.content or ""
    return text, dict(raw.headers), time.perf_counter() - started


def warm_up(proxy: ProxyServer, *, stream: bool, count: int = MIN_SAMPLES + 5) -> None:
    """Give the first offer a history of fast first outputs. (With hedging on, the odd one slower than
    its p90 may be hedged, within the budget, and served by b: that is hedging working.)"""
    for _ in range(count):
        text, headers, _ = ask(proxy, stream=stream)
        assert text and headers["x-gatewayz-attempts"] in ("1", "2")


def start(
    mock_provider: Callable[..., MockProvider],
    proxy_server: Callable[..., ProxyServer],
    *,
    b_faults: dict[str, Any] | None = None,
    **proxy: Any,
) -> tuple[MockProvider, MockProvider, ProxyServer]:
    a = mock_provider("a")
    b = mock_provider("b", **(b_faults or {}))
    return a, b, proxy_server(tail_config([a, b], **proxy))


def tail_config(mocks: list[MockProvider], **proxy: Any) -> Config:
    """The mocks in order of priority (so a load-slowed warm-up cannot reorder them), one model."""
    providers = [
        {"slug": m.name, "name": m.name, "base_url": m.url, "listing": "none", "priority": i}
        for i, m in enumerate(mocks)
    ]
    offers = [{"provider": m.name, "provider_model_id": f"{m.name}/gpt-4"} for m in mocks]
    data = {
        "proxy": {"stream_idle_timeout_s": 5, **SLOW_DEFAULTS, **proxy},
        "providers": providers,
        "models": [{"model_id": "gpt-4", "offers": offers}],
    }
    return config_from_mapping(data, "(test)", ENV)


def hedges(proxy: ProxyServer, outcome: str) -> float:
    return proxy.metric("gatewayz_hedges_total", model="gpt-4", outcome=outcome)


def all_hedges(proxy: ProxyServer) -> dict[str, float]:
    return {outcome: hedges(proxy, outcome) for outcome in ("won", "lost", "cancelled", "over_budget")}


def hedges_since(proxy: ProxyServer, before: dict[str, float]) -> dict[str, float]:
    return {outcome: count - before[outcome] for outcome, count in all_hedges(proxy).items()}


@pytest.mark.parametrize("stream", [False, True])
def test_a_hang_costs_the_learned_deadline_once_then_nothing(
    mock_provider: Any, proxy_server: Any, stream: bool
) -> None:
    a, b, proxy = start(mock_provider, proxy_server)
    warm_up(proxy, stream=stream)
    a.set_faults(fault="slow_first_byte", first_byte_ms=30_000)  # accepts, then says nothing

    text, headers, took = ask(proxy, stream=stream)
    assert text.startswith("b#") or headers["x-gatewayz-provider"] == "b"
    assert headers["x-gatewayz-attempts"] == "2"
    # the learned deadline (the floor: a's first outputs took milliseconds), not the configured 60 s
    assert DEADLINE_FLOOR_S * 0.9 <= took < DEADLINE_FLOOR_S + 2.0

    requests_to_a = a.stats()["requests"]
    _, headers, took = ask(proxy, stream=stream)
    assert headers["x-gatewayz-provider"] == "b"
    assert headers["x-gatewayz-attempts"] == "1"  # a ranks behind b now: nobody waits on it again
    assert took < 0.5 * DEADLINE_FLOOR_S
    assert a.stats()["requests"] == requests_to_a

    admin = httpx.get(f"{proxy.base}/admin/failover/model/gpt-4", headers=ADMIN).json()
    order = {o["provider"]: o for o in admin["failover_order"]}
    assert [o["provider"] for o in admin["failover_order"]] == ["b", "a"]
    assert order["a"]["ranked_behind_s"] > 0
    failures = proxy.metric("gatewayz_upstream_attempts_total", model="gpt-4", provider="a", result="first_output_late")
    assert failures == 1.0
    circuit = proxy.gateway.state.offers[("a", "a/gpt-4")].circuit
    assert circuit.failures == 1  # the circuit counted it


def test_without_history_the_configured_timeout_holds(mock_provider: Any, proxy_server: Any) -> None:
    a, _, proxy = start(mock_provider, proxy_server, first_byte_timeout_s=1.5)
    a.set_faults(fault="slow_first_byte", first_byte_ms=30_000)
    response = httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES}, timeout=30)
    assert response.headers["x-gatewayz-provider"] == "b"
    elapsed = response.elapsed.total_seconds()
    assert 1.4 <= elapsed < 4.0


def test_a_lone_offer_waits_the_configured_timeout(mock_provider: Any, proxy_server: Any) -> None:
    """With nothing to fail over to, failing early would only turn a slow answer into no answer."""
    a = mock_provider("a")
    proxy = proxy_server(tail_config([a]))
    warm_up(proxy, stream=False)
    a.set_faults(fault="slow_first_byte", first_byte_ms=1500)  # past the learned deadline (the floor)
    text, headers, took = ask(proxy, stream=False)
    assert text and headers["x-gatewayz-provider"] == "a"
    assert took >= 1.4


@pytest.mark.parametrize("stream", [False, True])
def test_a_hedge_wins_over_a_slow_first_offer(mock_provider: Any, proxy_server: Any, stream: bool) -> None:
    b_latency_s = 0.05
    faults = {"latency_ms": b_latency_s * 1000}
    a, b, proxy = start(mock_provider, proxy_server, b_faults=faults, hedge=True, hedge_budget=1.0)
    warm_up(proxy, stream=stream)
    learned = proxy.gateway.state.first_output.learned(("a", "a/gpt-4"), stream, 60.0)
    assert learned.hedge_delay_s is not None and learned.hedge_delay_s < 0.05
    a.set_faults(fault="slow_first_byte", first_byte_ms=2000)  # usually milliseconds, now 2 s
    before = all_hedges(proxy)
    with CapturedLogs().installed() as logs:
        text, headers, took = ask(proxy, stream=stream)
        answered = time.monotonic()
    assert headers["x-gatewayz-provider"] == "b"
    assert text.startswith("b#") or not stream
    # about b's own latency plus the hedge delay (plus a loaded machine's slack), far from a's 2 s
    assert took < b_latency_s + learned.hedge_delay_s + 0.5
    # a's connection was closed at once: its mock saw the client leave as the answer came
    gone = a.wait_for_disconnects(1)["disconnect_log"][0]
    assert abs(gone["at_monotonic"] - answered) < 0.25
    assert gone["after_ms"] < 1000
    assert hedges_since(proxy, before)["won"] == 1.0
    line = json.loads(next(m for m in logs.lines if '"tried"' in m))
    assert line["tried"] == ["a:cancelled", "b:ok"]
    assert line["hedge"] == "won"
    assert headers["x-gatewayz-attempts"] == "2"


def test_a_hedge_loses_when_the_first_offer_answers_first(mock_provider: Any, proxy_server: Any) -> None:
    a, b, proxy = start(mock_provider, proxy_server, hedge=True, hedge_budget=1.0)
    warm_up(proxy, stream=True)
    a.set_faults(fault="slow_first_byte", first_byte_ms=300)
    b.set_faults(fault="slow_first_byte", first_byte_ms=5000)
    b.reset_stats()
    before = all_hedges(proxy)
    text, headers, took = ask(proxy, stream=True)
    assert headers["x-gatewayz-provider"] == "a" and text.startswith("a#")
    assert took < 2.0
    b.wait_for_disconnects(1)  # the hedge was cancelled, its connection closed
    assert hedges_since(proxy, before)["lost"] == 1.0


def test_when_both_fail_the_next_offer_is_tried(mock_provider: Any, proxy_server: Any) -> None:
    a, b, c = mock_provider("a"), mock_provider("b"), mock_provider("c")
    proxy = proxy_server(tail_config([a, b, c], hedge=True, hedge_budget=1.0))
    warm_up(proxy, stream=False)
    a.set_faults(fault="status", status=500, latency_ms=300)  # fails, but only after its hedge delay
    b.set_faults(fault="status", status=502)
    before = all_hedges(proxy)
    response = httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES}, timeout=30)
    assert response.status_code == 200
    assert response.headers["x-gatewayz-provider"] == "c"
    assert response.headers["x-gatewayz-attempts"] == "3"
    assert hedges_since(proxy, before)["cancelled"] == 1.0


async def test_the_hedge_budget_holds_under_a_burst_of_slow_first_offers(mock_provider: Any, proxy_server: Any) -> None:
    budget, burst = 0.1, 40
    a, b, proxy = start(mock_provider, proxy_server, hedge=True, hedge_budget=budget)
    await asyncio.to_thread(warm_up, proxy, stream=False)
    warm = a.stats()["requests"]
    a.set_faults(fault="slow_first_byte", first_byte_ms=400)  # every first offer is slow now
    before = all_hedges(proxy)
    api = openai.AsyncOpenAI(base_url=proxy.url, api_key="client-key", max_retries=0, timeout=60)
    async with api:
        answers = await asyncio.gather(
            *(api.chat.completions.create(model="gpt-4", messages=MESSAGES) for _ in range(burst))
        )
    assert all(answer.choices[0].message.content for answer in answers)
    burst_hedges = hedges_since(proxy, before)
    started = {o: c for o, c in all_hedges(proxy).items() if o != "over_budget"}
    # since start-up, hedges never exceed the budget's share of the model's requests
    assert 1 <= sum(started.values()) <= budget * (warm + burst) + 1e-9
    # the only load on b is the hedges (one cancelled before it reached b is not seen there)
    assert b.stats()["requests"] <= sum(started.values())
    # every request of the burst was due a hedge: the budget refused all but a few
    assert burst_hedges["over_budget"] >= burst - budget * (warm + burst)
    assert sum(burst_hedges.values()) == burst


def test_no_hedge_when_the_request_allows_no_fallback(mock_provider: Any, proxy_server: Any) -> None:
    a, b, proxy = start(mock_provider, proxy_server, hedge=True, hedge_budget=1.0)
    warm_up(proxy, stream=False)
    a.set_faults(fault="slow_first_byte", first_byte_ms=400)
    b.reset_stats()
    before = all_hedges(proxy)
    text, headers, took = ask(proxy, stream=False, extra_body={"provider": {"allow_fallbacks": False}})
    assert headers["x-gatewayz-provider"] == "a" and text
    assert took >= 0.38
    assert b.stats()["requests"] == 0
    assert sum(hedges_since(proxy, before).values()) == 0


def test_hedging_is_per_model(mock_provider: Any, proxy_server: Any) -> None:
    a, b = mock_provider("a"), mock_provider("b")
    providers = [{"slug": m.name, "name": m.name, "base_url": m.url, "listing": "none"} for m in (a, b)]
    offers = [{"provider": m.name, "provider_model_id": f"{m.name}/gpt-4"} for m in (a, b)]
    data = {
        "proxy": {"hedge": False},
        "providers": providers,
        "models": [
            {"model_id": "gpt-4", "hedge": True, "hedge_budget": 0.5, "offers": offers},
            {"model_id": "gpt-3.5-turbo", "offers": offers},
        ],
    }
    proxy = proxy_server(config_from_mapping(data, "(test)", ENV))
    admin = httpx.get(f"{proxy.base}/admin/failover/model/gpt-4", headers=ADMIN).json()
    assert admin["hedge"] == {"enabled": True, "budget": 0.5}
    other = httpx.get(f"{proxy.base}/admin/failover/model/gpt-3.5-turbo", headers=ADMIN).json()
    assert other["hedge"] == {"enabled": False, "budget": 0.1}


def test_the_admin_view_shows_learned_first_output(mock_provider: Any, proxy_server: Any) -> None:
    _, _, proxy = start(mock_provider, proxy_server)
    before = httpx.get(f"{proxy.base}/admin/failover/model/gpt-4", headers=ADMIN).json()
    fresh = before["failover_order"][0]["first_output"]["stream"]
    assert fresh == {"samples": 0, "usual_ms": None, "hedge_delay_ms": None, "deadline_s": 60.0}
    warm_up(proxy, stream=True)
    after = httpx.get(f"{proxy.base}/admin/failover/model/gpt-4", headers=ADMIN).json()
    learned = after["failover_order"][0]["first_output"]
    assert learned["stream"]["samples"] == MIN_SAMPLES + 5
    assert 0 < learned["stream"]["usual_ms"] <= learned["stream"]["hedge_delay_ms"] < 1000
    assert learned["stream"]["deadline_s"] == DEADLINE_FLOOR_S
    assert learned["non_stream"]["samples"] == 0  # streams and whole answers are learned apart


@pytest.fixture
def explain_env(fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """`failover explain` run from an empty folder against the test's database."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FAILOVER_CONFIG", raising=False)
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    return fresh_database_url


def test_explain_shows_what_a_proxy_learned(
    explain_env: str, mock_provider: Any, proxy_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh_database_url = explain_env
    a, b = mock_provider("a"), mock_provider("b")
    env = {"DATABASE_URL": fresh_database_url}
    config = health_config([("a", a.url), ("b", b.url)], env=env, proxy={"health_flush_s": 0.2})
    asyncio.run(sync(fresh_database_url, config))
    proxy = proxy_server(config)
    wait_until(lambda: proxy.gateway.database_ok)
    warm_up(proxy, stream=True)

    async def flushed() -> Any:  # every sample of the warm-up, not a flush taken half-way through it
        learned = (await tracking(fresh_database_url))["a"]["first_output"]
        return learned and json.loads(learned)["stream"]["samples"] >= MIN_SAMPLES + 5

    asyncio.run(eventually(flushed))
    assert main(["explain", "gpt-4", "--json"]) == 0
    order = {o["provider"]: o for o in json.loads(capsys.readouterr().out)["failover_order"]}
    stream = order["a"]["first_output"]["stream"]
    assert stream["samples"] >= MIN_SAMPLES
    assert 0 < stream["usual_ms"] <= stream["hedge_delay_ms"] < 1000
    assert stream["deadline_s"] == DEADLINE_FLOOR_S
    assert order["a"]["first_output"]["non_stream"]["usual_ms"] is None
    assert main(["explain", "gpt-4"]) == 0
    table = capsys.readouterr().out
    assert f"first output (streams): usually {stream['usual_ms']:g} ms, hedge after" in table
    assert "first output (whole answers)" not in table


def test_a_client_that_leaves_cancels_both_attempts(mock_provider: Any, proxy_server: Any) -> None:
    a, b, proxy = start(mock_provider, proxy_server, hedge=True, hedge_budget=1.0)
    warm_up(proxy, stream=False)
    a.set_faults(fault="slow_first_byte", first_byte_ms=5000)
    b.set_faults(fault="slow_first_byte", first_byte_ms=5000)
    a.reset_stats()
    b.reset_stats()
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES}, timeout=0.5)
    a.wait_for_disconnects(1)
    b.wait_for_disconnects(1)


def test_a_reload_turns_hedging_on(mock_provider: Any, proxy_server: Any) -> None:
    a, b = mock_provider("a"), mock_provider("b")
    proxy = proxy_server(tail_config([a, b]))
    view = httpx.get(f"{proxy.base}/admin/failover/model/gpt-4", headers=ADMIN).json()
    assert view["hedge"] == {"enabled": False, "budget": 0.1}
    proxy.gateway.reload(tail_config([a, b], hedge=True, hedge_budget=0.3))
    view = httpx.get(f"{proxy.base}/admin/failover/model/gpt-4", headers=ADMIN).json()
    assert view["hedge"] == {"enabled": True, "budget": 0.3}


def test_a_responses_request_is_never_hedged(mock_provider: Any, proxy_server: Any) -> None:
    """A created response is stored where it was made: racing two providers would leave a second one
    behind (and a chain pinned to the loser). Chat requests of the same model are hedged."""
    a, b, proxy = start(mock_provider, proxy_server, hedge=True, hedge_budget=1.0)
    warm_up(proxy, stream=False)
    a.set_faults(fault="slow_first_byte", first_byte_ms=400)  # past its hedge delay, within the 1 s floor
    b.reset_stats()
    before = all_hedges(proxy)
    answer = client(proxy).responses.with_raw_response.create(model="gpt-4", input="hello")
    assert answer.headers["x-gatewayz-provider"] == "a" and answer.parse().output_text
    assert answer.headers["x-gatewayz-attempts"] == "1"
    assert b.stats()["requests"] == 0
    assert sum(hedges_since(proxy, before).values()) == 0
    _, headers, _ = ask(proxy, stream=False)  # the same slow offer, on chat: hedged
    assert headers["x-gatewayz-provider"] == "b" and sum(hedges_since(proxy, before).values()) == 1
