"""Load for the fault tests: many concurrent requests, each counted as served or lost.

A request is served when it gets a 200 with a complete answer (a stream ending in `[DONE]` with no
error event); anything else, a transport error included, is lost and kept with its reason.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_aiohttp import AiohttpTransport

MESSAGES = [{"role": "user", "content": "hello"}]
CHAT = {"model": "gpt-4", "messages": MESSAGES}
STREAM = {**CHAT, "stream": True}


@dataclass
class Tally:
    """What a run of requests got: complete answers by provider, and every request lost."""

    served: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(self.served.values())

    def check(self, expected: int) -> None:
        assert self.lost == [], f"{len(self.lost)} lost, first: {self.lost[:3]}"
        assert not [s for s in self.statuses if s >= 500], f"5xx answers: {self.statuses}"
        assert self.ok == expected, f"{self.ok} served of {expected}"


def complete_stream(text: str) -> str | None:
    """Why a streamed answer is not complete and valid, or None when it is."""
    events = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
    if events and events[-1].startswith('{"error"'):
        return f"ended with an error event: {events[-1][:160]}"
    if not events or events[-1] != "[DONE]":
        return f"no [DONE] at the end: {events[-1:]}"
    for event in events[:-1]:
        try:
            parsed = json.loads(event)
        except ValueError:
            return f"an event is not JSON: {event[:80]}"
        if "error" in parsed:
            return f"error event: {event[:160]}"
    return None


async def request(client: httpx.AsyncClient, url: str, body: dict[str, Any], tally: Tally, **kw: Any) -> None:
    """One request; a complete answer counts as served, anything else as lost."""
    try:
        if body.get("stream"):
            async with client.stream("POST", f"{url}/chat/completions", json=body, **kw) as response:
                text = (await response.aread()).decode()
            problem = complete_stream(text) if response.status_code == 200 else text[:200]
        else:
            response = await client.post(f"{url}/chat/completions", json=body, **kw)
            text = response.text
            problem = None if response.status_code == 200 and response.json()["choices"] else text[:200]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        tally.lost.append(f"{type(exc).__name__}: {exc}")
        return
    tally.statuses[response.status_code] += 1
    if problem is not None:
        tally.lost.append(f"{response.status_code}: {problem}")
        return
    tally.served[response.headers["x-gatewayz-provider"]] += 1


def load_client(connections: int = 100) -> httpx.AsyncClient:
    """httpx's API on aiohttp's pool: httpx's own pool slows to tens of requests/s at hundreds of connections."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(transport=AiohttpTransport(limits=limits), timeout=httpx.Timeout(30.0))
