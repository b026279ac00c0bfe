"""The proxy's own 503 tells OpenAI-style clients the truth about retrying, and the official SDK,
left at its default `max_retries` (2), then sends as many requests as that truth warrants: counted
at the proxy."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import openai
import pytest

from tests.harness import ProxyServer, gateway_config

MESSAGES: Any = [{"role": "user", "content": "hi"}]


def requests_seen(proxy: ProxyServer, outcome: str) -> int:
    """What the proxy itself counted: `gatewayz_requests_total` for gpt-4 with this outcome."""
    text = httpx.get(f"{proxy.base}/metrics").text
    pattern = rf'gatewayz_requests_total{{model="gpt-4",outcome="{outcome}",route="/v1/chat/completions"}} (\S+)'
    found = re.search(pattern, text)
    return int(float(found.group(1))) if found else 0


def test_every_offer_just_failed_says_do_not_retry_and_the_sdk_asks_once(
    mock_provider: Any, proxy_server: Any
) -> None:
    a, b = mock_provider("a", fault="status", status=500), mock_provider("b", fault="status", status=502)
    proxy = proxy_server(gateway_config([("a", a.url), ("b", b.url)]))
    raw = httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES})
    assert raw.status_code == 503
    assert raw.headers["x-should-retry"] == "false"
    assert "retry-after" not in raw.headers
    sdk = openai.OpenAI(base_url=proxy.url, api_key="k")  # the default: max_retries=2
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model="gpt-4", messages=MESSAGES)
    assert caught.value.status_code == 503
    assert requests_seen(proxy, "all_providers_failed") == 2  # the raw one above, then one from the SDK
    assert a.stats()["paths"]["/v1/chat/completions"] == 2  # each offer asked once per proxy request


def test_every_offer_cooling_down_says_when_and_the_sdk_retries_after_it(
    mock_provider: Any, proxy_server: Any
) -> None:
    limited = mock_provider("a", fault="rate_limit", retry_after="1")
    proxy = proxy_server(gateway_config([("a", limited.url)]))
    sdk = openai.OpenAI(base_url=proxy.url, api_key="k")  # the default: max_retries=2
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model="gpt-4", messages=MESSAGES)
    elapsed = time.monotonic() - started
    response = caught.value.response
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "x-should-retry" not in response.headers
    assert requests_seen(proxy, "all_providers_failed") == 3  # 1 + the SDK's 2 retries, each after Retry-After
    assert elapsed >= 1.9  # two waits of Retry-After: 1 s, as the README says


def test_with_max_retries_0_the_sdk_asks_once_even_when_cooling_down(mock_provider: Any, proxy_server: Any) -> None:
    limited = mock_provider("a", fault="rate_limit", retry_after="30")
    proxy = proxy_server(gateway_config([("a", limited.url)]))
    sdk = openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model="gpt-4", messages=MESSAGES)
    assert caught.value.response.headers["retry-after"] == "30"
    assert requests_seen(proxy, "all_providers_failed") == 1
