"""The attempt loop: walk the ranked offers until one serves the request, within one deadline.

For each offer: rewrite `model`, send with that provider's key, and wait for the status and (for a
stream) the first chunk, or (otherwise) the whole body. Nothing has been sent to the client yet, so
any retryable failure moves on to the next offer. A non-retryable answer (the client's own mistake)
is raised as `UpstreamStatus` for the caller to pass through; when every offer failed,
`AllOffersFailed` carries one `Attempt` per try. Classification, cooldowns and circuits are the
pure modules' decisions; this module only calls them and keeps the records.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from proxy.config import ProxySettings, Secret
from proxy.errors import (
    AllOffersFailed,
    ConnectFailed,
    ConnectTimeout,
    DeadlineExceeded,
    FirstByteTimeout,
    MalformedResponse,
    UpstreamError,
    UpstreamStatus,
)
from proxy.failover.classify import COOLDOWN_STATUSES, is_retryable_status, retry_after_seconds
from proxy.failover.endpoints import PROXIED, Endpoint
from proxy.runtime.metrics import Metrics
from proxy.runtime.state import RuntimeState
from proxy.types import Attempt, Offer, Preferences, Ranking
from proxy.upstream.client import MAX_ERROR_BODY, Body, UpstreamClient, UpstreamResponse
from proxy.upstream.responses_events import first_output

SSE_STARTS = (b"data:", b":", b"event:", b"id:", b"retry:")
MAX_FIRST_EVENT = 64 * 1024  # a first event longer than this is not a chat chunk
CHAT = PROXIED["/v1/chat/completions"]


class ForwardRequest(Protocol):
    """What the loop needs of a client's request (a parsed JSON body, or a multipart form)."""

    @property
    def model(self) -> str: ...
    @property
    def stream(self) -> bool: ...
    @property
    def prefs(self) -> Preferences: ...
    def encode_for(self, provider_model_id: str) -> Body: ...


@dataclass(slots=True)
class Served:
    """The offer that answered, its open response, and what was read of it before commit."""

    offer: Offer
    response: UpstreamResponse
    first: bytes  # the first stream chunk, or the whole non-streaming body
    attempts: list[Attempt]
    upstream_s: float  # time spent waiting on providers, failed attempts included
    parsed: dict[str, Any] | None = None  # the non-streaming body, parsed (for usage and cost)
    response_id: str | None = None  # a Responses API stream's id, from its `response.created` event


@dataclass(slots=True)
class AttemptContext:
    settings: ProxySettings
    client: UpstreamClient
    state: RuntimeState
    keys: Mapping[str, Secret]
    metrics: Metrics


async def run_attempts(
    ctx: AttemptContext,
    request: ForwardRequest,
    ranking: Ranking,
    *,
    path: str,
    headers: Mapping[str, str],
    deadline: float,
    endpoint: Endpoint = CHAT,
) -> Served:
    """Try the ranked offers in order; `deadline` is on the event loop's clock. `endpoint` says how
    an answer is judged before commit (`proxy.failover.endpoints`)."""
    loop = asyncio.get_running_loop()
    attempts: list[Attempt] = []
    upstream_s = 0.0
    offers = ranking.offers[: ctx.settings.max_attempts]
    for index, offer in enumerate(offers):
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        started = loop.time()
        try:
            served = await _try_offer(ctx, request, offer, endpoint, path=path, headers=headers, deadline=deadline)
        except UpstreamError as exc:
            elapsed = loop.time() - started
            upstream_s += elapsed
            attempts.append(_failed(ctx, request, offer, exc, elapsed))
            if not exc.retryable:
                if isinstance(exc, UpstreamStatus):
                    exc.attempts, exc.offer = tuple(attempts), offer
                raise
            if index + 1 < len(offers):
                model = ctx.metrics.model(offer.model_id)
                from_provider = ctx.metrics.provider(offer.provider_slug)
                ctx.metrics.child(ctx.metrics.failovers, model, from_provider, _code(exc)).inc()
            continue
        elapsed = loop.time() - started
        attempts.append(Attempt(offer.provider_slug, offer.provider_model_id, "ok", elapsed * 1000))
        _succeeded(ctx, request, offer, elapsed)
        served.attempts = attempts
        served.upstream_s = upstream_s + elapsed
        return served
    raise AllOffersFailed(attempts, retry_after_s=_soonest_usable(ctx, ranking))


async def _try_offer(
    ctx: AttemptContext,
    request: ForwardRequest,
    offer: Offer,
    endpoint: Endpoint,
    *,
    path: str,
    headers: Mapping[str, str],
    deadline: float,
) -> Served:
    settings = ctx.settings
    loop = asyncio.get_running_loop()
    remaining = deadline - loop.time()
    send_headers = dict(headers)
    key = ctx.keys.get(offer.provider_slug)
    if key:
        send_headers["authorization"] = f"Bearer {key.reveal()}"
    url = offer.base_url + path
    body = request.encode_for(offer.provider_model_id)
    budget = min(settings.first_byte_timeout_s, remaining)
    ctx.state.take(offer, time.time())
    response: UpstreamResponse | None = None
    reading = False  # the status line is in: the rest of a non-streaming answer has until the deadline
    try:
        try:
            async with asyncio.timeout(budget) as timer:
                response = await ctx.client.send(url, send_headers, body)
                if response.status >= 300:
                    raise await _status_error(response)
                if request.stream:
                    return await _first_of_stream(offer, response, endpoint)
                if endpoint.answer == "binary":
                    return Served(offer, response, await _first_bytes(response), [], 0.0)
                reading = True
                timer.reschedule(max(deadline, loop.time() + 0.001))
                raw = await response.read()
        except TimeoutError:
            deadline_bound = reading or remaining <= settings.first_byte_timeout_s
            raise (DeadlineExceeded() if deadline_bound else FirstByteTimeout()) from None
        if endpoint.answer == "document" and not _is_json(response):
            response.release()
            return Served(offer, response, raw, [], 0.0)
        return _whole_body(offer, response, raw)
    except BaseException:
        if response is not None:
            response.close()
        raise


async def _status_error(response: UpstreamResponse) -> UpstreamStatus:
    try:
        body = await response.read(MAX_ERROR_BODY)
    except UpstreamError:
        body = b""
    retryable = is_retryable_status(response.status)
    return UpstreamStatus(
        response.status,
        retryable=retryable,
        body=body,
        headers=response.headers,
        retry_after_s=retry_after_seconds(response.headers, time.time()) if retryable else None,
    )


async def _first_of_stream(offer: Offer, response: UpstreamResponse, endpoint: Endpoint) -> Served:
    if endpoint.events == "responses":
        first, response_id = await first_output(response)
        return Served(offer, response, first, [], 0.0, response_id=response_id)
    return Served(offer, response, await _first_event(response), [], 0.0)


def _is_json(response: UpstreamResponse) -> bool:
    return any(k.lower() == "content-type" and "json" in v.lower() for k, v in response.headers)


async def _first_bytes(response: UpstreamResponse) -> bytes:
    """A binary answer (audio) up to its first bytes: a JSON body where bytes were promised is an
    error in disguise, and an answer that ends empty is no answer; both fail over."""
    if _is_json(response):
        raise MalformedResponse("the provider answered JSON where audio bytes were expected")
    async for chunk in response.chunks():
        if chunk:
            return chunk
    raise MalformedResponse("the provider's answer is empty")


async def _first_event(response: UpstreamResponse) -> bytes:
    """The stream up to its first complete event, checked before commit: server-sent events whose
    first data event is a JSON object and not an error. Returns every byte read, to relay as it came."""
    buffered = b""
    async for chunk in response.chunks():
        buffered += chunk
        head = buffered.lstrip()
        if not head:
            continue
        if not head.startswith(SSE_STARTS):
            raise MalformedResponse("the provider's stream is not server-sent events")
        end = _event_end(head)
        if end >= 0:
            _check_first_event(head[:end])
            return buffered
        if len(buffered) > MAX_FIRST_EVENT:
            raise MalformedResponse("the provider's first event is too long")
    raise MalformedResponse("the provider's stream ended before its first event")


def _event_end(data: bytes) -> int:
    """Where the first event ends (a blank line, in any of the SSE line endings), or -1."""
    end = data.find(b"\n\n")
    if b"\r" not in data:
        return end
    ends = [i for i in (end, data.find(b"\r\n\r\n"), data.find(b"\r\r")) if i >= 0]
    return min(ends) if ends else -1


def _check_first_event(event: bytes) -> None:
    data = [line[5:].removeprefix(b" ") for line in event.splitlines() if line.startswith(b"data:")]
    if not data or data == [b"[DONE]"]:
        return  # a comment or a bare field: nothing to judge yet
    try:
        parsed = orjson.loads(b"\n".join(data))
    except orjson.JSONDecodeError:
        raise MalformedResponse("the provider's first event is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise MalformedResponse("the provider's first event is not a JSON object")
    if parsed.get("error") is not None:
        raise MalformedResponse("the provider's stream opened with an error event")


def _whole_body(offer: Offer, response: UpstreamResponse, body: bytes) -> Served:
    """A non-streaming answer, read in full: checked to be a JSON object, its connection released."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedResponse("the provider's answer is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise MalformedResponse("the provider's answer is not a JSON object")
    response.release()
    return Served(offer, response, body, [], 0.0, parsed)


def _code(exc: UpstreamError) -> str:
    return str(exc.status) if isinstance(exc, UpstreamStatus) else exc.code


def _failed(ctx: AttemptContext, request: ForwardRequest, offer: Offer, exc: UpstreamError, elapsed: float) -> Attempt:
    code = _code(exc)
    metrics = ctx.metrics
    metrics.child(metrics.attempts, metrics.provider(offer.provider_slug), metrics.model(offer.model_id), code).inc()
    if exc.retryable:
        ctx.state.record_failure(
            offer,
            code,
            time.time(),
            connection=isinstance(exc, ConnectFailed | ConnectTimeout),
            cooldown_s=_cooldown(ctx.settings, exc),
        )
    return Attempt(offer.provider_slug, offer.provider_model_id, code, elapsed * 1000, exc.retryable, exc.message)


def _cooldown(settings: ProxySettings, exc: UpstreamError) -> float | None:
    """How long a provider asked us to stay away: its Retry-After, or a short default on 429."""
    if not isinstance(exc, UpstreamStatus) or exc.status not in COOLDOWN_STATUSES:
        return None
    if exc.retry_after_s is not None:
        return exc.retry_after_s
    return settings.default_cooldown_s if exc.status == 429 else None


def _succeeded(ctx: AttemptContext, request: ForwardRequest, offer: Offer, elapsed: float) -> None:
    metrics = ctx.metrics
    provider = metrics.provider(offer.provider_slug)
    metrics.child(metrics.attempts, provider, metrics.model(offer.model_id), "ok").inc()
    metrics.child(metrics.ttfb, provider).observe(elapsed)
    ctx.state.record_success(offer, elapsed * 1000, time.time())


def _soonest_usable(ctx: AttemptContext, ranking: Ranking) -> float | None:
    """When every offer is cooling down, the seconds until the first one is usable again."""
    now = time.time()
    everyone = ranking.offers + ranking.cooling
    untils = [ctx.state.view(o, now).cooldown_until for o in everyone]
    if not untils or any(u <= now for u in untils):
        return ranking.retry_after_s
    return min(untils) - now
