"""The attempt loop: walk the ranked offers until one serves the request, within one deadline.

For each offer: rewrite `model`, send with that provider's key, and wait for the status and (for a
stream) the first event that carries output, or (otherwise) the whole body. Nothing has been sent to
the client yet, so any retryable failure moves on to the next offer. The verdicts are the pure
modules': `proxy.failover.refusals` for an error status read with its body, `proxy.failover.verdict`
for a 200's body and a stream's events. A non-retryable answer (the client's own mistake) is raised
as `UpstreamStatus` for the caller to pass through; when every offer failed, `AllOffersFailed`
carries one `Attempt` per try. A committed stream's attempt is counted when it ends (`settle_stream`),
so an in-band error or a cut after commit counts against the offer, not as a success.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from proxy.config import ProxySettings, Secret
from proxy.errors import (
    AllOffersFailed,
    ConnectFailed,
    ConnectTimeout,
    DeadlineExceeded,
    ErrorInAnswer,
    FirstByteTimeout,
    UpstreamError,
    UpstreamStatus,
)
from proxy.failover.client_request import ClientRequest
from proxy.failover.endpoints import PROXIED, Endpoint
from proxy.failover.first_output import first_output_seen, first_output_timeout, first_output_wait
from proxy.failover.hedge import CANCELLED_ATTEMPT, HedgePlan, Hedging, Leg, hedge_plan, race
from proxy.failover.reading import first_bytes, first_output, is_json, judge_body, status_error
from proxy.failover.refusals import Cooldown, is_account_failure
from proxy.runtime.metrics import Metrics
from proxy.runtime.state import RuntimeState
from proxy.types import Attempt, Offer, Preferences, Ranking
from proxy.upstream.client import Body, UpstreamClient, UpstreamResponse
from proxy.upstream.responses_events import response_id_of

CONTEXT_REFUSAL = "context_length"
CHAT = PROXIED["/v1/chat/completions"]
HEDGED_KINDS = frozenset({"chat", "completions", "embeddings"})


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
    first: bytes  # a stream's bytes up to its first output (held events included), or the whole body
    attempts: list[Attempt]
    upstream_s: float  # time spent waiting on providers, failed attempts included
    parsed: dict[str, Any] | None = None  # the non-streaming body, parsed (for usage and cost)
    response_id: str | None = None  # a Responses API stream's id, from its `response.created` event
    first_output_s: float = 0.0  # this attempt's time to its first output (a stream) or whole answer


@dataclass(slots=True)
class AttemptContext:
    settings: ProxySettings
    client: UpstreamClient
    state: RuntimeState
    keys: Mapping[str, Secret]
    metrics: Metrics
    hedging: Hedging | None = None


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
    an answer is judged before commit (`proxy.failover.endpoints`). The first offer of a model with
    hedging on may have the second one raced against it (`proxy.failover.hedge`; JSON endpoints of
    `HEDGED_KINDS` only)."""
    loop = asyncio.get_running_loop()
    run = _Run(ctx, request, ranking.offers)
    offers = run.offers

    def start(offer: Offer) -> Awaitable[Served]:
        run.started += 1
        more = offers.index(offer) + 1 < len(offers) and run.started < ctx.settings.max_attempts
        return _try_offer(ctx, request, offer, endpoint, path=path, headers=headers, deadline=deadline, more=more)

    skip = 0
    hedge = _hedge_plan(ctx, request, offers, endpoint)
    if hedge is not None:
        served = await _hedged(run, start, hedge)
        if served is not None:
            return served
        skip = len(run.attempts)
    for offer in offers[skip:]:
        if len(run.attempts) >= ctx.settings.max_attempts or deadline - loop.time() <= 0:
            break
        if not _fits_context(offer, run.context_floor):
            continue
        started = loop.time()
        try:
            served = await start(offer)
        except UpstreamError as exc:
            run.failed(offer, exc, loop.time() - started)
            continue
        return run.succeeded(served, loop.time() - started)
    cooling = ctx.state.cooling_reasons(ranking.cooling, time.time()) if ranking.cooling else ()
    raise AllOffersFailed(run.attempts, retry_after_s=_soonest_usable(ctx, ranking), cooling=cooling)


def _hedge_plan(
    ctx: AttemptContext, request: ForwardRequest, offers: tuple[Offer, ...], endpoint: Endpoint
) -> HedgePlan | None:
    """Hedging races two providers on one request: only for the JSON endpoints where a duplicate
    costs little and leaves nothing behind (not a stored response, an image, audio or an upload)."""
    if endpoint.kind not in HEDGED_KINDS or not isinstance(request, ClientRequest):
        return None
    return hedge_plan(
        ctx.hedging, ctx.state.first_output, offers, request=request, max_attempts=ctx.settings.max_attempts
    )


class _Run:
    """The attempts of one request so far, and the bookkeeping of each one's end."""

    __slots__ = ("attempts", "context_floor", "ctx", "offers", "request", "started", "upstream_s")

    def __init__(self, ctx: AttemptContext, request: ForwardRequest, offers: tuple[Offer, ...]) -> None:
        self.ctx, self.request, self.offers = ctx, request, offers
        self.attempts: list[Attempt] = []
        self.upstream_s = 0.0
        self.started = 0  # attempts started (a race runs two at once)
        self.context_floor: int | None = None  # after a context-length refusal: only larger (or unknown) contexts

    def failed(self, offer: Offer, exc: UpstreamError, elapsed: float, *, hedge: bool = False) -> None:
        """Record a failed attempt; raise `exc` when it is not retryable (the caller passes it through)."""
        ctx, index = self.ctx, self.offers.index(offer)
        self.upstream_s += elapsed
        if _is_context_refusal(exc):
            self.context_floor = max(self.context_floor or 0, offer.context_length or 0)
            later = self.offers[index + 1 :]
            exc.retryable = _any_left(ctx, later, self.context_floor, len(self.attempts) + 1)
        self.attempts.append(_failed(ctx, offer, exc, elapsed, hedge=hedge))
        if not exc.retryable:
            if isinstance(exc, UpstreamStatus):
                exc.attempts, exc.offer = tuple(self.attempts), offer
            raise exc
        if index + 1 < len(self.offers):
            model = ctx.metrics.model(offer.model_id)
            from_provider = ctx.metrics.provider(offer.provider_slug)
            ctx.metrics.child(ctx.metrics.failovers, model, from_provider, exc.outcome).inc()

    def succeeded(self, served: Served, elapsed: float, *, hedge: bool = False) -> Served:
        offer = served.offer
        self.attempts.append(Attempt(offer.provider_slug, offer.provider_model_id, "ok", elapsed * 1000, hedge=hedge))
        _answered(self.ctx, offer, elapsed, settled=not self.request.stream)
        served.attempts = self.attempts
        served.upstream_s = self.upstream_s + elapsed
        served.first_output_s = elapsed
        return served

    def settle(self, leg: Leg, *, taken: bool) -> tuple[Served | None, UpstreamError | None]:
        """Record how one leg of a race ended: (its answer if it is the one served, its error if that
        must be passed through). `taken`: an earlier leg already served."""
        outcome = leg.result
        if isinstance(outcome, Served) and not taken:
            return self.succeeded(outcome, leg.elapsed, hedge=leg.hedge), None
        if isinstance(outcome, UpstreamError):
            try:
                self.failed(leg.offer, outcome, leg.elapsed, hedge=leg.hedge)
            except UpstreamError as final:
                return None, final
            return None, None
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, Served):
            outcome.response.close()  # answered in the same instant as the winner: too late
        self.cancelled(leg.offer, leg.elapsed, hedge=leg.hedge)
        return None, None

    def cancelled(self, offer: Offer, elapsed: float, *, hedge: bool) -> None:
        metrics = self.ctx.metrics
        provider, model = metrics.provider(offer.provider_slug), metrics.model(offer.model_id)
        metrics.child(metrics.attempts, provider, model, CANCELLED_ATTEMPT).inc()
        detail = "cancelled: the other attempt of the hedged request answered first"
        ms = elapsed * 1000
        attempt = Attempt(
            offer.provider_slug, offer.provider_model_id, CANCELLED_ATTEMPT, ms, True, detail, hedge=hedge
        )
        self.attempts.append(attempt)


async def _hedged(run: _Run, start: Callable[[Offer], Awaitable[Served]], plan: HedgePlan) -> Served | None:
    """The first offer, raced against the second after the hedge delay; the answer, or None when
    every leg failed (retryably). A leg's non-retryable answer is raised once both are recorded."""
    result = await race(start, plan)
    if result.outcome is not None:
        metrics = run.ctx.metrics
        metrics.child(metrics.hedges, metrics.model(plan.first.model_id), result.outcome).inc()
    winner: Served | None = None
    final: UpstreamError | None = None
    upstream_s = run.upstream_s + result.elapsed_s  # the legs overlap: the race's own time, not their sum
    for leg in result.legs:
        served, error = run.settle(leg, taken=winner is not None)
        winner, final = winner or served, final or error
    run.upstream_s = upstream_s
    if winner is not None:
        winner.attempts, winner.upstream_s = run.attempts, upstream_s
        return winner
    if final is not None:
        if isinstance(final, UpstreamStatus):
            final.attempts = tuple(run.attempts)
        raise final
    return None


def _is_context_refusal(exc: UpstreamError) -> bool:
    return isinstance(exc, UpstreamStatus) and exc.kind == CONTEXT_REFUSAL


def _fits_context(offer: Offer, floor: int | None) -> bool:
    """After a context-length refusal, an offer is worth trying when its known context is larger than
    the refusing offer's, or unknown (a refusing offer of unknown context rules nothing out)."""
    return floor is None or offer.context_length is None or offer.context_length > floor


def _any_left(ctx: AttemptContext, later: tuple[Offer, ...], floor: int, tried: int) -> bool:
    return tried < ctx.settings.max_attempts and any(_fits_context(o, floor) for o in later)


async def _try_offer(
    ctx: AttemptContext,
    request: ForwardRequest,
    offer: Offer,
    endpoint: Endpoint,
    *,
    path: str,
    headers: Mapping[str, str],
    deadline: float,
    more: bool,
) -> Served:
    """One attempt. With another offer to try (`more`), the wait for the first output is bounded by the
    offer's learned deadline rather than the configured `first_byte_timeout_s`."""
    settings = ctx.settings
    loop = asyncio.get_running_loop()
    remaining = deadline - loop.time()
    send_headers = dict(headers)
    key = ctx.keys.get(offer.provider_slug)
    if key:
        send_headers["authorization"] = f"Bearer {key.reveal()}"
    url = offer.base_url + path
    body = request.encode_for(offer.provider_model_id)
    wait = first_output_wait(ctx.state, offer, request.stream, settings.first_byte_timeout_s, more=more)
    budget = min(wait, remaining)
    ctx.state.take(offer, time.time())
    response: UpstreamResponse | None = None
    started = loop.time()
    reading = False  # the status line is in: the rest of a non-streaming answer has until the deadline
    try:
        try:
            async with asyncio.timeout(budget) as timer:
                response = await ctx.client.send(url, send_headers, body)
                if response.status >= 300:
                    raise await status_error(response)
                if request.stream:
                    first = await first_output(response, path)
                    first_output_seen(ctx.state, offer, request.stream, loop.time() - started)
                    return _streamed(offer, response, first, endpoint)
                if endpoint.answer == "binary":
                    first = await first_bytes(response)
                    first_output_seen(ctx.state, offer, request.stream, loop.time() - started)
                    return Served(offer, response, first, [], 0.0)
                first_output_seen(ctx.state, offer, request.stream, loop.time() - started)
                reading = True
                timer.reschedule(max(deadline, loop.time() + 0.001))
                raw = await response.read()
        except TimeoutError:
            if reading or remaining <= wait:
                raise DeadlineExceeded() from None
            raise first_output_timeout(ctx.state, offer, request.stream, wait, settings.first_byte_timeout_s) from None
        if endpoint.answer == "document" and not is_json(response):
            response.release()
            return Served(offer, response, raw, [], 0.0)
        return _whole_body(offer, response, raw, path)
    except BaseException:
        if response is not None:
            response.close()
        raise


def _streamed(offer: Offer, response: UpstreamResponse, first: bytes, endpoint: Endpoint) -> Served:
    """A stream up to its first output; a Responses stream also names the response it created."""
    response_id = response_id_of(first) if endpoint.events == "responses" else None
    return Served(offer, response, first, [], 0.0, response_id=response_id)


def _whole_body(offer: Offer, response: UpstreamResponse, body: bytes, path: str) -> Served:
    """A non-streaming answer, read in full and judged by its content; its connection released."""
    parsed = judge_body(body, path)
    response.release()
    return Served(offer, response, body, [], 0.0, parsed)


def _failed(ctx: AttemptContext, offer: Offer, exc: UpstreamError, elapsed: float, *, hedge: bool) -> Attempt:
    code = exc.outcome
    metrics = ctx.metrics
    metrics.child(metrics.attempts, metrics.provider(offer.provider_slug), metrics.model(offer.model_id), code).inc()
    now = time.time()
    if exc.retryable and (not isinstance(exc, UpstreamStatus) or exc.counts):
        ctx.state.record_failure(
            offer,
            code,
            now,
            connection=isinstance(exc, ConnectFailed | ConnectTimeout),
            cooldown_s=_cooldown(ctx.settings, exc),
            slow=isinstance(exc, FirstByteTimeout),
        )
    if _account_failure(exc):
        ctx.state.cool_provider(offer.provider_slug, now)
    detail = exc.message
    return Attempt(
        offer.provider_slug, offer.provider_model_id, code, elapsed * 1000, exc.retryable, detail, hedge=hedge
    )


def _account_failure(exc: UpstreamError) -> bool:
    """The provider refused its own account (key, billing, quota), in a status or inside a 200."""
    if isinstance(exc, UpstreamStatus):
        return exc.cooldown == Cooldown.PROVIDER
    return isinstance(exc, ErrorInAnswer) and is_account_failure(exc.message)


def _cooldown(settings: ProxySettings, exc: UpstreamError) -> float | None:
    """How long a provider asked us to stay away: its Retry-After, or a short default on 429."""
    if not isinstance(exc, UpstreamStatus) or exc.cooldown != Cooldown.OFFER:
        return None
    if exc.retry_after_s is not None:
        return exc.retry_after_s
    return settings.default_cooldown_s if exc.status == 429 else None


def _answered(ctx: AttemptContext, offer: Offer, elapsed: float, *, settled: bool) -> None:
    metrics = ctx.metrics
    provider = metrics.provider(offer.provider_slug)
    metrics.child(metrics.ttfb, provider).observe(elapsed)
    if settled:
        metrics.child(metrics.attempts, provider, metrics.model(offer.model_id), "ok").inc()
        ctx.state.record_success(offer, elapsed * 1000, time.time())


def settle_stream(ctx: AttemptContext, served: Served, error: UpstreamError | None) -> None:
    """A committed stream ended: count its attempt once, as `ok` or as the provider's failure that
    ended it (an in-band error, a cut, a stall). A client that hung up is not the provider's failure."""
    metrics = ctx.metrics
    offer = served.offer
    code = "ok" if error is None else error.outcome
    metrics.child(metrics.attempts, metrics.provider(offer.provider_slug), metrics.model(offer.model_id), code).inc()
    now = time.time()
    if error is None:
        ctx.state.record_success(offer, served.first_output_s * 1000, now)
        return
    ctx.state.record_failure(offer, code, now)
    for index in range(len(served.attempts) - 1, -1, -1):  # the served attempt (a cancelled hedge may follow it)
        attempt = served.attempts[index]
        if attempt.outcome == "ok" and (attempt.provider, attempt.provider_model_id) == offer.key:
            served.attempts[index] = replace(attempt, outcome=code, detail=error.message)
            break


def _soonest_usable(ctx: AttemptContext, ranking: Ranking) -> float | None:
    """When every offer is cooling down, the seconds until the first one is usable again."""
    now = time.time()
    everyone = ranking.offers + ranking.cooling
    untils = [ctx.state.view(o, now).cooldown_until for o in everyone]
    if not untils or any(u <= now for u in untils):
        return ranking.retry_after_s
    return min(untils) - now
