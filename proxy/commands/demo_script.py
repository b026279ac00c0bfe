"""The demo's scripted requests, sent with the official `openai` SDK as any application would."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai

from proxy.mock.testing import MockProvider

MESSAGES: Any = [{"role": "user", "content": "Say hello in five words."}]


def say(text: str = "") -> None:
    print(text, flush=True)


def served_line(n: int, raw: Any, elapsed: float) -> str:
    attempts = int(raw.headers["x-gatewayz-attempts"])
    note = "" if attempts == 1 else f"   <- failed over after {attempts - 1} failed attempt(s)"
    return (
        f"  #{n:<2} served by {raw.headers['x-gatewayz-provider']:<9} as {raw.headers['x-gatewayz-provider-model']:<32}"
        f" {elapsed * 1000:6.1f} ms{note}"
    )


def chat_round(sdk: openai.OpenAI, count: int, **extra: Any) -> int:
    failovers = 0
    for n in range(1, count + 1):
        started = time.perf_counter()
        try:
            raw = sdk.chat.completions.with_raw_response.create(model="gpt-4", messages=MESSAGES, **extra)
        except openai.APIStatusError as exc:
            say(f"  #{n:<2} failed: {exc.status_code} {exc.message}")
            continue
        say(served_line(n, raw, time.perf_counter() - started))
        failovers += raw.headers["x-gatewayz-attempts"] != "1"
    return failovers


def stream_once(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(model="llama-3-70b-instruct", messages=MESSAGES, stream=True)
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    say(f"  streamed {len(pieces)} chunks, in order: {''.join(pieces)!r}")


def show_ranking(base: str, token: str) -> None:
    view = httpx.get(f"{base}/admin/failover/model/gpt-4", headers={"authorization": f"Bearer {token}"}).json()
    for entry in view["failover_order"]:
        say(f"  {entry['priority']}. {entry['provider']:<9} health={entry['health']:<9} circuit={entry['circuit']}")
    say(f"  recommendation: {view['recommendation']}")


def show_metrics(base: str) -> None:
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith(("gatewayz_failovers_total{", "gatewayz_requests_total{")):
            say(f"  {line}")


def run_script(base: str, mocks: dict[str, MockProvider], token: str) -> None:
    sdk = openai.OpenAI(base_url=f"{base}/v1", api_key="any-key-the-proxy-is-open", max_retries=0)
    say(f"Models: {', '.join(m.id for m in sdk.models.list())}\n")
    say("1. gpt-4, six requests: flakyai is preferred (priority 0) but answers 503 to every other request")
    failovers = chat_round(sdk, 6)
    say(f"   {failovers} request(s) failed over; the client saw no error\n")
    say("2. a streamed request for llama-3-70b-instruct (offered by steadyai and backupai)")
    stream_once(sdk)
    say("\nWhat the proxy now thinks of gpt-4's offers: flakyai failed half the time, so it went last")
    show_ranking(base, token)
    say("\n3. flakyai recovers; steadyai goes down (closes every connection without answering)")
    mocks["flakyai"].set_faults(fault="none")
    mocks["steadyai"].set_faults(fault="down")
    chat_round(sdk, 3)
    say("\n4. the client prefers backupai (header x-gatewayz-provider), which rate-limits: 429, Retry-After: 30")
    mocks["backupai"].set_faults(fault="rate_limit", retry_after="30")
    chat_round(sdk, 3, extra_headers={"x-gatewayz-provider": "backupai"})
    say("   backupai cools down for 30 s: after the first 429 it is not asked again")
    say("\nThe ranking now (GET /admin/failover/model/gpt-4):")
    show_ranking(base, token)
    say("\nMetrics (GET /metrics):")
    show_metrics(base)
