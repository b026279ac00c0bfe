"""Failover end to end: the official openai SDK -> `GatewayApp` on a socket -> mock providers.

One test per retryable failure class of SPEC section 7, and the ones that must not fail over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from proxy.mock.testing import MockProvider, refused_url
from tests.harness import ProxyServer, gateway_config

MESSAGES: Any = [{"role": "user", "content": "hello"}]
KEYS = {"A_API_KEY": "sk-test-aaaaaaaaaaaaaaaaaaaaaaaa", "B_API_KEY": "sk-test-bbbbbbbbbbbbbbbbbbbbbbbb"}


def client(proxy: ProxyServer, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url, api_key=kw.pop("api_key", "client-key"), max_retries=0, **kw)


def chat(proxy: ProxyServer, **kw: Any) -> Any:
    return client(proxy).chat.completions.with_raw_response.create(model="gpt-4", messages=MESSAGES, **kw)


def two_providers(
    mock_provider: Callable[..., MockProvider], proxy_server: Callable[..., ProxyServer], *, a_url: str | None = None,
    proxy: dict[str, Any] | None = None, **a_faults: Any,
) -> tuple[MockProvider | None, MockProvider, ProxyServer]:
    a = None if a_url else mock_provider("a", **a_faults)
    b = mock_provider("b")
    config = gateway_config([("a", a_url or a.url), ("b", b.url)], env=KEYS, proxy=proxy)  # type: ignore[union-attr]
    return a, b, proxy_server(config)


def test_rewrites_model_and_sends_the_providers_own_key(mock_provider: Any, proxy_server: Any) -> None:
    a, b, proxy = two_providers(mock_provider, proxy_server)
    raw = chat(proxy)
    answer = raw.parse()
    assert answer.choices[0].message.content
    assert raw.headers["x-gatewayz-provider"] == "a"
    assert raw.headers["x-gatewayz-provider-model"] == "a/gpt-4"
    assert raw.headers["x-gatewayz-attempts"] == "1"
    assert raw.headers["x-request-id"]
    seen = a.stats()["recent"][-1]  # type: ignore[union-attr]
    assert seen["body"]["model"] == "a/gpt-4"
    assert seen["headers"]["authorization"] == f"Bearer {KEYS['A_API_KEY']}"
    assert b.stats()["requests"] == 0


@pytest.mark.parametrize(
    ("faults", "reason"),
    [
        ({"fault": "status", "status": 500}, "500"),
        ({"fault": "status", "status": 502}, "502"),
        ({"fault": "status", "status": 503}, "503"),
        ({"fault": "status", "status": 529}, "529"),
        ({"fault": "rate_limit", "retry_after": "1"}, "429"),
        ({"fault": "status", "status": 401}, "401"),
        ({"fault": "status", "status": 402}, "402"),
        ({"fault": "status", "status": 403}, "403"),
        ({"fault": "status", "status": 404}, "404"),
        ({"fault": "garbage"}, "malformed_response"),
        ({"fault": "down"}, "connect_error"),
    ],
)
def test_fails_over_on_each_retryable_class(
    mock_provider: Any, proxy_server: Any, faults: dict[str, Any], reason: str
) -> None:
    a, b, proxy = two_providers(mock_provider, proxy_server, **faults)
    raw = chat(proxy)
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-gatewayz-provider"] == "b"
    assert raw.headers["x-gatewayz-attempts"] == "2"
    metrics = httpx.get(f"{proxy.base}/metrics").text
    assert f'gatewayz_failovers_total{{from_provider="a",model="gpt-4",reason="{reason}"}} 1.0' in metrics


def test_fails_over_on_a_refused_connection_quickly(mock_provider: Any, proxy_server: Any) -> None:
    _, b, proxy = two_providers(mock_provider, proxy_server, a_url=refused_url())
    started = time.perf_counter()
    raw = chat(proxy)
    assert raw.headers["x-gatewayz-provider"] == "b"
    assert time.perf_counter() - started < 1.0
    assert b.stats()["requests"] == 1


def test_fails_over_on_first_byte_timeout(mock_provider: Any, proxy_server: Any) -> None:
    a, b, proxy = two_providers(
        mock_provider, proxy_server, fault="slow_first_byte", first_byte_ms=3000, proxy={"first_byte_timeout_s": 0.3}
    )
    started = time.perf_counter()
    raw = chat(proxy)
    assert raw.headers["x-gatewayz-provider"] == "b"
    assert 0.3 <= time.perf_counter() - started < 2.0


def test_fails_over_when_a_stream_fails_before_its_first_chunk(mock_provider: Any, proxy_server: Any) -> None:
    _, b, proxy = two_providers(mock_provider, proxy_server, fault="status", status=503)
    stream = client(proxy).chat.completions.create(model="gpt-4", messages=MESSAGES, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.startswith("b#")


@pytest.mark.parametrize("status", [400, 422])
def test_a_refusal_of_unknown_kind_gets_one_second_opinion(mock_provider: Any, proxy_server: Any, status: int) -> None:
    """The mock's refusal ("injected status") says neither that the client erred nor what the offer
    lacks: one other provider is asked (tests/test_refusals_by_kind.py has the rest of the rule)."""
    a, b, proxy = two_providers(mock_provider, proxy_server, fault="status", status=status)
    response = httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES})
    assert response.status_code == 200
    assert response.headers["x-gatewayz-provider"] == "b"
    assert response.headers["x-gatewayz-attempts"] == "2"
    assert (a.stats()["requests"], b.stats()["requests"]) == (1, 1)


def test_all_failed_is_503_with_every_attempt(mock_provider: Any, proxy_server: Any) -> None:
    a = mock_provider("a", fault="status", status=500)
    b = mock_provider("b", fault="status", status=502)
    proxy = proxy_server(gateway_config([("a", a.url), ("b", b.url), ("c", refused_url())], env=KEYS))
    response = httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES})
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "all_providers_failed"
    assert [(t["provider"], t["status"]) for t in error["attempts"]] == [
        ("a", "500"),
        ("b", "502"),
        ("c", "connect_error"),
    ]
    assert all(t["provider_model_id"] and t["elapsed_ms"] >= 0 for t in error["attempts"])
    with pytest.raises(openai.InternalServerError):
        chat(proxy)


def test_max_attempts_caps_the_loop(mock_provider: Any, proxy_server: Any) -> None:
    mocks = [mock_provider(s, fault="status", status=500) for s in "abc"]
    config = gateway_config([(m.name, m.url) for m in mocks], proxy={"max_attempts": 2})
    proxy = proxy_server(config)
    response = httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES})
    assert len(response.json()["error"]["attempts"]) == 2
    assert mocks[2].stats()["requests"] == 0


def test_retry_after_cools_the_provider_until_it_ends(mock_provider: Any, proxy_server: Any) -> None:
    a, b, proxy = two_providers(mock_provider, proxy_server, fault="rate_limit", retry_after="2")
    assert chat(proxy).headers["x-gatewayz-attempts"] == "2"
    a.set_faults(fault="none")  # type: ignore[union-attr]
    for _ in range(3):  # cooling: a is skipped without being asked
        assert chat(proxy).headers["x-gatewayz-provider"] == "b"
    assert a.stats()["requests"] == 1  # type: ignore[union-attr]
    time.sleep(2.1)
    assert chat(proxy).headers["x-gatewayz-provider"] == "a"


def test_every_offer_cooling_down_answers_503_with_retry_after(mock_provider: Any, proxy_server: Any) -> None:
    a = mock_provider("a", fault="rate_limit", retry_after="30")
    b = mock_provider("b", fault="rate_limit", retry_after_ms=12000)
    proxy = proxy_server(gateway_config([("a", a.url), ("b", b.url)]))
    first = httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES})
    assert first.status_code == 503
    assert first.headers["retry-after"] == "12"
    second = httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES})
    assert second.status_code == 503
    assert second.json()["error"]["attempts"] == []
    assert 10 <= int(second.headers["retry-after"]) <= 12
    assert a.stats()["requests"] == 1 and b.stats()["requests"] == 1


def test_circuit_stops_hammering_a_failing_provider(mock_provider: Any, proxy_server: Any) -> None:
    a, b, proxy = two_providers(
        mock_provider, proxy_server, fault="status", status=500,
        proxy={"circuit_failure_threshold": 3, "circuit_cooldown_s": 1},
    )
    for _ in range(10):
        assert chat(proxy).headers["x-gatewayz-provider"] == "b"
    assert a.stats()["requests"] == 3  # type: ignore[union-attr]
    a.set_faults(fault="none")  # type: ignore[union-attr]
    time.sleep(1.1)
    assert chat(proxy).headers["x-gatewayz-provider"] == "a"  # the half-open trial, and it succeeds
    assert chat(proxy).headers["x-gatewayz-provider"] == "a"


def test_connection_errors_open_the_whole_providers_circuit(mock_provider: Any, proxy_server: Any) -> None:
    b = mock_provider("b")
    dead = refused_url()
    config = gateway_config(
        [("a", dead), ("b", b.url)], {"gpt-4": ["a", "b"], "gpt-3.5-turbo": ["a", "b"]},
        proxy={"circuit_failure_threshold": 2},
    )
    proxy = proxy_server(config)
    for _ in range(2):
        chat(proxy)
    other = client(proxy).chat.completions.with_raw_response.create(model="gpt-3.5-turbo", messages=MESSAGES)
    assert other.headers["x-gatewayz-attempts"] == "1"  # a's circuit is open for every model
    assert other.headers["x-gatewayz-provider"] == "b"


def test_deadline_bounds_the_whole_request(mock_provider: Any, proxy_server: Any) -> None:
    slow = {"fault": "slow_first_byte", "first_byte_ms": 5000}
    mocks = [mock_provider(s, **slow) for s in "ab"]
    config = gateway_config([(m.name, m.url) for m in mocks], proxy={"deadline_s": 0.8, "first_byte_timeout_s": 0.5})
    proxy = proxy_server(config)
    started = time.perf_counter()
    response = httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES}, timeout=10)
    elapsed = time.perf_counter() - started
    assert response.status_code == 503
    assert [t["status"] for t in response.json()["error"]["attempts"]] == ["first_byte_timeout", "deadline_exceeded"]
    assert elapsed < 1.5


def test_completions_and_embeddings_fail_over_too(mock_provider: Any, proxy_server: Any) -> None:
    a, b, proxy = two_providers(mock_provider, proxy_server, fault="status", status=500)
    sdk = client(proxy)
    completion = sdk.completions.with_raw_response.create(model="gpt-4", prompt="hi")
    assert completion.headers["x-gatewayz-provider"] == "b"
    assert completion.parse().choices[0].text
    embedding = sdk.embeddings.with_raw_response.create(model="gpt-4", input="hi")
    assert embedding.headers["x-gatewayz-provider"] == "b"
    assert len(embedding.parse().data[0].embedding) > 0


def test_an_open_circuit_is_the_last_resort_not_a_lost_request(mock_provider: Any, proxy_server: Any) -> None:
    a, b, proxy = two_providers(
        mock_provider, proxy_server, fault="status", status=500,
        proxy={"circuit_failure_threshold": 2, "circuit_cooldown_s": 60},
    )
    for _ in range(3):
        chat(proxy)
    assert a.stats()["requests"] == 2  # type: ignore[union-attr]  # then its circuit opened
    a.set_faults(fault="none")  # type: ignore[union-attr]
    b.set_faults(fault="status", status=503)
    raw = chat(proxy)  # b (closed circuit) fails; a, open, is still asked rather than losing the request
    assert raw.headers["x-gatewayz-provider"] == "a"
    assert raw.headers["x-gatewayz-attempts"] == "2"
