"""The demo's client: a few requests through the proxy that show failover, then steady traffic.

Run by the `demo-client` service of `docker compose --profile demo up` (standard library only: the
image carries the proxy's runtime dependencies and nothing else). Each answer's `x-gatewayz-*`
headers say which provider served it and after how many attempts; mock-a fails about a third of
its requests, so some answers come from mock-b with `attempts=2`. With `DEMO_TRAFFIC_RPS` above 0
it then keeps sending that many requests a second, so the Grafana dashboard has something to show,
and prints a summary every `DEMO_SUMMARY_S` seconds.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

PROXY = os.environ.get("PROXY_URL", "http://proxy:8080").rstrip("/")
MODELS = ("gpt-4", "gpt-3.5-turbo")
SCRIPTED_REQUESTS = 12


def _headers() -> dict[str, str]:
    headers = {"content-type": "application/json"}
    keys = [k.strip() for k in os.environ.get("FAILOVER_API_KEYS", "").split(",") if k.strip()]
    if keys:
        headers["authorization"] = f"Bearer {keys[0]}"
    return headers


def call(method: str, path: str, body: bytes | None = None, timeout: float = 60) -> tuple[int, dict[str, str], str]:
    """One request to the proxy: status, headers (lower-cased names), body text."""
    url = urlsplit(PROXY)
    connection = http.client.HTTPConnection(url.hostname or "proxy", url.port or 80, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=_headers())
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read().decode()
    finally:
        connection.close()


def wait_ready(timeout_s: float = 180.0) -> None:
    """Poll `/readyz` until the proxy has its catalog; exit 1 if it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if call("GET", "/readyz", timeout=3)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(1)
    sys.exit(f"demo-client: {PROXY}/readyz did not answer 200 within {timeout_s:.0f} s")


def chat(model: str, *, stream: bool = False) -> tuple[int, dict[str, str], str]:
    """One chat completion: the status, the `x-gatewayz-*` headers and the reply text (or error)."""
    body = {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "stream": stream}
    try:
        status, headers, raw = call("POST", "/v1/chat/completions", json.dumps(body).encode())
    except OSError as exc:
        return 0, {}, f"no answer: {exc}"
    gatewayz = {k: v for k, v in headers.items() if k.startswith("x-gatewayz-")}
    return status, gatewayz, _reply_text(raw, stream) if status == 200 else raw[:200]


def _reply_text(raw: str, stream: bool) -> str:
    if not stream:
        return str(json.loads(raw)["choices"][0]["message"]["content"])
    pieces: list[str] = []
    for line in raw.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            choices: list[Any] = json.loads(line[6:]).get("choices") or [{}]
            pieces.append(choices[0].get("delta", {}).get("content") or "")
    return "".join(pieces) + f"  ({len(pieces)} events)"


def show(n: int, model: str, stream: bool) -> tuple[int, dict[str, str]]:
    status, headers, text = chat(model, stream=stream)
    served = headers.get("x-gatewayz-provider", "-")
    attempts = headers.get("x-gatewayz-attempts", "-")
    note = "  <- failed over" if attempts not in ("-", "1") else ""
    kind = "stream" if stream else "      "
    print(f"{n:3} {model:14} {kind} {status} provider={served:7} attempts={attempts}{note}  {text[:60]}")
    return status, headers


def scripted() -> None:
    print(f"demo-client: {SCRIPTED_REQUESTS} requests through {PROXY}", flush=True)
    failovers = 0
    for n in range(SCRIPTED_REQUESTS):
        _, headers = show(n + 1, MODELS[n % 2], stream=n % 4 == 3)
        failovers += headers.get("x-gatewayz-attempts", "1") != "1"
    print(f"demo-client: {failovers} of {SCRIPTED_REQUESTS} answers needed a failover", flush=True)


def steady_traffic(rps: float, summary_s: float) -> None:
    served: Counter[str] = Counter()
    window_start, n = time.monotonic(), 0
    while True:
        status, headers, _ = chat(MODELS[n % 2], stream=n % 5 == 0)
        served[f"{status} {headers.get('x-gatewayz-provider', '-')} x{headers.get('x-gatewayz-attempts', '-')}"] += 1
        n += 1
        if time.monotonic() - window_start >= summary_s:
            print("demo-client: last window: " + ", ".join(f"{k}: {v}" for k, v in sorted(served.items())))
            sys.stdout.flush()
            served.clear()
            window_start = time.monotonic()
        time.sleep(1 / rps)


def main() -> None:
    wait_ready()
    scripted()
    rps = float(os.environ.get("DEMO_TRAFFIC_RPS", "0"))
    if rps > 0:
        print(f"demo-client: now {rps:g} requests/s for the dashboard (http://localhost:3000)", flush=True)
        steady_traffic(rps, float(os.environ.get("DEMO_SUMMARY_S", "30")))


if __name__ == "__main__":
    main()
