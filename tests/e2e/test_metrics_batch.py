"""Batched metrics over real sockets: after requests through the proxy, `/metrics` counts each once."""

from __future__ import annotations

import math
from typing import Any

import httpx

from tests.harness import gateway_config

# values on, just below and just above bucket bounds, zero, the largest bound, past it, tiny and huge
OBSERVED = [0.0, 0.005, 0.0050001, 0.00499, 0.01, 0.3, 1.0, 120.0, 120.5, 1e-9, 3600.0, 0.0001, 0.1]


def _lines(text: bytes, prefix: str) -> list[str]:
    return [line for line in text.decode().splitlines() if line.startswith(prefix) and "_created" not in line]


def test_metrics_after_requests_count_each_request_once(mock_provider: Any, proxy_server: Any) -> None:
    upstream = mock_provider("a")
    proxy = proxy_server(gateway_config([("a", upstream.url)]))
    body = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}
    for round_ in (1, 2):
        for _ in range(3):
            assert httpx.post(f"{proxy.base}/v1/chat/completions", json=body).status_code == 200
        text = httpx.get(f"{proxy.base}/metrics").text
        requests = next(x for x in text.splitlines() if x.startswith("gatewayz_requests_total{"))
        assert requests.endswith(f" {3.0 * round_}"), requests
        count = next(x for x in text.splitlines() if x.startswith("gatewayz_request_duration_seconds_count{"))
        assert math.isclose(float(count.split()[-1]), 3 * round_), count
