"""One probe of one offer: a cheap real request, answered or not within a timeout.

- `chat`: `POST {base_url}/chat/completions` for the provider's model id with `max_tokens: 1`; the
  offer is up when a JSON object with `choices` comes back. An Anthropic-speaking provider
  (`api = "anthropic"`) is asked `POST {base_url}/messages` the same way, and is up when a
  `content` list comes back.
- `listing`: `GET {base_url}/models`; the offer is up when the listing names its provider model id.
- an offer that does not serve chat is probed through an endpoint it does serve (`probe_kind`):
  `embeddings` (a one-word embedding; up when `data` comes back), `completions` (1 token; `choices`),
  `responses` (a few tokens, not stored; `output`), `moderations` (one word; `results`); an offer
  that serves none of those (images, audio only) through the listing, which costs nothing.

The provider's key goes only to that provider (signed as its API takes it: `proxy.provider_api`; no
redirects followed) and never into a result. `probe_offer` never raises for the provider's failures: every outcome is a
`ProbeResult` whose `result` is a low-cardinality word ("ok", "503", "timeout", "connect_error",
"malformed_response", "not_listed", "network_error") fit for a metric label.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import orjson

from proxy.commands.listing import parse_openai_listing
from proxy.config import Secret
from proxy.errors import ListingError
from proxy.provider_api import ANTHROPIC, sign

PROBE_MESSAGES = [{"role": "user", "content": "ping"}]
# the endpoint a probe goes through, in order of preference, with its body and the list a good answer has
PROBES: dict[str, tuple[str, dict[str, object], str]] = {
    "chat": ("/chat/completions", {"messages": PROBE_MESSAGES, "max_tokens": 1, "stream": False}, "choices"),
    "embeddings": ("/embeddings", {"input": "ping"}, "data"),
    "completions": ("/completions", {"prompt": "ping", "max_tokens": 1, "stream": False}, "choices"),
    "responses": ("/responses", {"input": "ping", "max_output_tokens": 16, "store": False}, "output"),
    "moderations": ("/moderations", {"input": "ping"}, "results"),
}
# the chat probe of an Anthropic-speaking provider: its Messages API (`max_tokens` is required there)
MESSAGES_PROBE = ("/messages", {"messages": PROBE_MESSAGES, "max_tokens": 1}, "content")
LISTING_QUERY = {ANTHROPIC: "?limit=1000"}  # Anthropic's listing pages by 20 unless asked for more


def probe_kind(configured: str, endpoints: frozenset[str]) -> str:
    """How to probe an offer: the provider's `probe` (`chat`, `listing`, `none`), where `chat` means
    "a generation through an endpoint the offer serves": chat when it serves chat, else the first
    of `PROBES` it serves, else the listing."""
    if configured != "chat":
        return configured
    return next((kind for kind in PROBES if kind in endpoints), "listing")


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    offer_id: int
    model_id: str
    provider_slug: str
    provider_model_id: str
    base_url: str
    kind: str  # listing, or a key of PROBES (chat, embeddings, completions, responses, moderations)
    api_key: Secret
    api: str = "openai"  # the API its provider speaks (`proxy.types.APIS`)

    @property
    def key(self) -> tuple[str, str]:
        return (self.provider_slug, self.provider_model_id)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    target: ProbeTarget
    result: str
    elapsed_ms: float
    http_status: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.result == "ok"


class _Failed(Exception):
    def __init__(self, result: str, error: str, status: int | None = None) -> None:
        super().__init__(error)
        self.result, self.error, self.status = result, error, status


def _headers(target: ProbeTarget) -> dict[str, str]:
    headers = {"accept": "application/json", "user-agent": "gatewayz-health/1"}
    sign(headers, target.api, target.api_key)
    return headers


async def _generate(session: aiohttp.ClientSession, target: ProbeTarget) -> int:
    path, fields, expected = MESSAGES_PROBE if target.api == ANTHROPIC else PROBES[target.kind]
    body = {"model": target.provider_model_id, **fields}
    url = f"{target.base_url}{path}"
    headers = {**_headers(target), "content-type": "application/json"}
    async with session.post(url, data=orjson.dumps(body), headers=headers, allow_redirects=False) as response:
        payload = await _json(response)
    if not isinstance(payload, dict) or not isinstance(payload.get(expected), list):
        raise _Failed("malformed_response", f"the answer to {path} has no {expected!r} list", response.status)
    return response.status


async def _listing(session: aiohttp.ClientSession, target: ProbeTarget) -> int:
    url = f"{target.base_url}/models{LISTING_QUERY.get(target.api, '')}"
    async with session.get(url, headers=_headers(target), allow_redirects=False) as response:
        payload = await _json(response)
    try:
        listed = {m.provider_model_id for m in parse_openai_listing(payload, "listing")}
    except ListingError as exc:
        raise _Failed("malformed_response", str(exc), response.status) from None
    if target.provider_model_id not in listed:
        raise _Failed("not_listed", f"{target.provider_model_id} is not in the provider's listing", response.status)
    return response.status


async def _json(response: aiohttp.ClientResponse) -> object:
    if response.status >= 300:
        raise _Failed(str(response.status), f"HTTP {response.status}", response.status)
    try:
        return orjson.loads(await response.read())
    except orjson.JSONDecodeError:
        raise _Failed("malformed_response", "the answer is not JSON", response.status) from None


async def probe_offer(session: aiohttp.ClientSession, target: ProbeTarget, timeout_s: float) -> ProbeResult:
    """Probe one offer; whatever happens (but cancellation) comes back as a `ProbeResult`."""
    started = time.perf_counter()
    send = _listing if target.kind == "listing" else _generate

    def done(result: str, status: int | None = None, error: str | None = None) -> ProbeResult:
        return ProbeResult(target, result, (time.perf_counter() - started) * 1000, status, error)

    try:
        async with asyncio.timeout(timeout_s):
            status = await send(session, target)
    except _Failed as failed:
        return done(failed.result, failed.status, failed.error)
    except TimeoutError:
        return done("timeout", error=f"no answer within {timeout_s:g} s")
    except aiohttp.ClientConnectorError as exc:
        return done("connect_error", error=f"cannot connect: {exc.os_error.strerror or type(exc.os_error).__name__}")
    except aiohttp.ClientError as exc:
        return done("network_error", error=f"request failed: {type(exc).__name__}")
    return done("ok", status)
