"""The attempt loop: walk the ranked offers until one serves the request, within one deadline.

For each offer: rewrite `model`, send with that provider's key, and wait for the status and (for a
stream) the first event that carries output, or (otherwise) the whole body. Nothing has been sent to
the client yet, so any retryable failure moves on to the next offer. How an answer is read and
judged is the endpoint's (`proxy.failover.endpoints`); the verdicts are the pure modules':
`proxy.failover.judge.refusals` for an error status read with its body, `proxy.failover.judge.verdict` for a
200's body and a stream's events.

Every attempt is written into the request's record (`proxy.failover.record`) as it ends, and nothing
else: the loop returns the `Served` answer, raises the provider's refusal unchanged when it is final
(the client's own mistake, passed through), or raises `AllOffersFailed`, built from the record's
attempts where the loop ends (with the first refusal when every offer refused the request itself,
which the client then gets unchanged rather than a 503). Errors are never changed after they are raised.

A refusal of unknown kind (neither a known client mistake nor a known limit of the offer) gets one
second opinion from another provider's offer (`proxy.failover.judge.second_opinion`) before it is passed through.

The wait for a first output is bounded by the offer's learned deadline (`proxy.runtime.first_output`)
when another offer is left to try; with none, the configured `first_byte_timeout_s` holds, since
failing early would turn a slow answer into no answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from proxy.errors import (
    AllOffersFailed,
    DeadlineExceeded,
    FirstByteTimeout,
    FirstOutputLate,
    UpstreamError,
    UpstreamStatus,
)
from proxy.failover.client_request import ClientRequest
from proxy.failover.dialect import Dialect
from proxy.failover.endpoints import Endpoint, ForwardRequest
from proxy.failover.hedge import HedgeBudgets, HedgePlan, hedge_plan, race
from proxy.failover.judge.refusals import refuses_the_request
from proxy.failover.judge.request_terms import terms_for
from proxy.failover.judge.second_opinion import SERVED, opinion_outcome, second_opinion_offer
from proxy.failover.judge.verdict import AnswerCheck, OutputPredicate
from proxy.failover.reading import first_bytes, first_output, is_json, judge_body, status_error
from proxy.failover.record import RequestRecord
from proxy.failover.usage_ask import UsageAsk, client_asked_usage, refuses_usage_ask
from proxy.runtime.live import LiveConfig
from proxy.runtime.state import RuntimeState
from proxy.types import Offer, Ranking
from proxy.upstream.client import Body, UpstreamClient, UpstreamResponse
from proxy.upstream.responses_events import response_id_of

CONTEXT_REFUSAL = "context_length"
NOT_SIGNED: dict[str, str] = {}


@dataclass(slots=True)
class Call:
    """One client request as it is sent: to which endpoint, with which headers, until when (never
    changed once made: a plain class only because a frozen one costs several times as much to build).

    `live` is the config snapshot the request started with; `deadline` is on the event loop's clock;
    `path` is the endpoint's upstream path (a pinned response's id filled in)."""

    request: ForwardRequest
    endpoint: Endpoint
    live: LiveConfig
    headers: Mapping[str, str]
    deadline: float
    path: str
    method: str = "POST"


@dataclass(slots=True)
class Served:
    """The offer that answered, its open response, and what was read of it before commit."""

    offer: Offer
    response: UpstreamResponse
    first: bytes  # a stream's bytes up to its first output (held events included), or the whole body
    parsed: dict[str, Any] | None = None  # the non-streaming body, parsed (for usage and cost)
    response_id: str | None = None  # a Responses API stream's id, from its `response.created` event
    first_output_s: float = 0.0  # the attempt's time to its first output (a whole answer: its status line)
    dialect: Dialect | None = None  # the offer spoke another API: `first`/`parsed` of a whole answer are
    # already the client's; a stream is translated as it is relayed (`Endpoint.relay_parts`)
    usage_ask: UsageAsk = UsageAsk.NONE  # what the proxy did about a stream's usage (`proxy.failover.usage_ask`)


@dataclass(slots=True)
class AttemptContext:
    """This instance's long-lived parts the loop uses: the upstream client, the runtime state (a
    half-open trial is claimed as an attempt starts; the learned deadlines) and the hedge budgets."""

    client: UpstreamClient
    state: RuntimeState
    hedging: HedgeBudgets


async def run_attempts(ctx: AttemptContext, call: Call, ranking: Ranking, record: RequestRecord) -> Served:
    """Try the ranked offers in order, at most `max_attempts` of them. The first offer of a model with
    hedging on may have the second one raced against it (`proxy.failover.hedge`; `Endpoint.hedged`)."""
    loop = asyncio.get_running_loop()
    run = _Run(ctx, call, ranking.offers, record)
    offers = ranking.offers
    skip = 0
    plan = _hedge_plan(ctx, call, offers)
    if plan is not None:
        served = await _hedged(run, plan)
        if served is not None:
            return served
        skip = run.started
    for offer in offers[skip:]:
        if run.started >= run.max_attempts or call.deadline - loop.time() <= 0:
            break
        if not _fits_context(offer, run.context_floor):
            continue
        started = loop.time()
        try:
            served = await run.start(offer)
        except UpstreamError as exc:
            elapsed = loop.time() - started
            record.waited(elapsed)
            run.failed(offer, exc, elapsed)
            if run.opinion is not None:
                return await _ask_second_opinion(run, *run.opinion)
            continue
        elapsed = loop.time() - started
        record.waited(elapsed)
        record.attempt_served(offer, elapsed, served.first_output_s)
        return served
    cooling = ctx.state.cooling_reasons(ranking.cooling, time.time()) if ranking.cooling else ()
    raise AllOffersFailed(
        record.attempts, retry_after_s=_soonest_usable(ctx.state, ranking), refusal=run.refusal, cooling=cooling
    )


def _hedge_plan(ctx: AttemptContext, call: Call, offers: tuple[Offer, ...]) -> HedgePlan | None:
    """Hedging races two providers on one request: only JSON requests of a hedged endpoint."""
    request = call.request
    if not call.endpoint.hedged or not isinstance(request, ClientRequest):
        return None
    return hedge_plan(call.live, ctx.hedging, ctx.state.first_output, offers, request=request)


class _Run:
    """One pass of the loop over one model's ranked offers: what was started, and each failure's end."""

    __slots__ = (
        "call", "context_floor", "ctx", "failures", "max_attempts", "offers", "opinion", "record", "refusal", "started"
    )  # fmt: skip

    def __init__(self, ctx: AttemptContext, call: Call, offers: tuple[Offer, ...], record: RequestRecord) -> None:
        self.ctx, self.call, self.offers, self.record = ctx, call, offers, record
        self.max_attempts = call.live.settings.max_attempts
        self.started = 0  # attempts started (a race runs two at once)
        self.context_floor: int | None = None  # after a context-length refusal: only larger (or unknown) contexts
        self.failures = 0
        self.refusal: UpstreamStatus | None = None  # the first refusal, while every failure is a refusal of the request
        self.opinion: tuple[Offer, UpstreamStatus] | None = None  # the offer to ask, and the refusal it is about

    def start(self, offer: Offer) -> Awaitable[Served]:
        self.started += 1
        more = self.offers.index(offer) + 1 < len(self.offers) and self.started < self.max_attempts
        return _try_offer(self.ctx, self.call, offer, more=more)

    def failed(self, offer: Offer, exc: UpstreamError, elapsed: float, *, hedge: bool = False) -> None:
        """Record a failed attempt; raise `exc` (unchanged) when it ends the request (passed through),
        unless it gets a second opinion first (`opinion` is then set for the loop)."""
        if isinstance(exc, UpstreamStatus) and exc.kind == CONTEXT_REFUSAL:
            self.context_floor = max(self.context_floor or 0, offer.context_length or 0)
        final = self._final(offer, exc)
        if final is not None and not hedge:
            other = second_opinion_offer(
                offer, final.second_opinion, self.call.request.prefs, self.offers, tried=self.started,
                max_attempts=self.max_attempts, enabled=self.call.live.settings.second_opinion,
            )  # fmt: skip
            if other is not None:
                self.opinion, final = (other, final), None
        self.record.attempt_failed(offer, exc, elapsed, final=final is not None, hedge=hedge)
        self._note_refusal(exc)
        if final is not None:
            raise final

    def _note_refusal(self, exc: UpstreamError) -> None:
        """Keep the first refusal of the request itself for as long as every failure is one."""
        self.failures += 1
        if not refuses_the_request(exc):
            self.refusal = None
        elif self.failures == 1 and isinstance(exc, UpstreamStatus):
            self.refusal = exc

    def _final(self, offer: Offer, exc: UpstreamError) -> UpstreamStatus | None:
        """The refusal to pass through, when this failure ends the request: not retryable (the client's
        own mistake), the endpoint's own answer (a pinned response's 404), or a context-length refusal
        with no larger offer left to try."""
        if not isinstance(exc, UpstreamStatus):
            return None
        if not exc.retryable or self.call.endpoint.final_status(exc.status):
            return exc
        if exc.kind == CONTEXT_REFUSAL:
            later = self.offers[self.offers.index(offer) + 1 :]
            floor = self.context_floor
            if self.started >= self.max_attempts or not any(_fits_context(o, floor) for o in later):
                return exc
        return None


async def _hedged(run: _Run, plan: HedgePlan) -> Served | None:
    """The first offer, raced against the second after the hedge delay; the answer, or None when
    every leg failed (retryably). A leg's final refusal is raised once both legs are recorded."""
    result = await race(run.start, plan)
    record = run.record
    if result.outcome is not None:
        record.hedged(result.outcome)
    winner: Served | None = None
    final: UpstreamError | None = None
    for leg in result.legs:
        outcome = leg.result
        if isinstance(outcome, Served) and winner is None:
            record.attempt_served(leg.offer, leg.elapsed, outcome.first_output_s, hedge=leg.hedge)
            winner = outcome
        elif isinstance(outcome, UpstreamError):
            try:
                run.failed(leg.offer, outcome, leg.elapsed, hedge=leg.hedge)
            except UpstreamStatus as refusal:
                final = final or refusal
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            if isinstance(outcome, Served):
                outcome.response.close()  # answered in the same instant as the winner: too late
            record.attempt_cancelled(leg.offer, leg.elapsed, hedge=leg.hedge)
    record.waited(result.elapsed_s)  # the legs overlap: the race's own time, not their sum
    if winner is not None:
        return winner
    if final is not None:
        raise final
    return None


async def _ask_second_opinion(run: _Run, other: Offer, refusal: UpstreamStatus) -> Served:
    """One attempt at another provider's offer: its answer, or (whatever went wrong) the first refusal."""
    loop = asyncio.get_running_loop()
    record = run.record
    if run.call.deadline - loop.time() > 0:
        started = loop.time()
        try:
            served = await run.start(other)
        except UpstreamError as exc:
            elapsed = loop.time() - started
            record.waited(elapsed)
            record.attempt_failed(other, exc, elapsed, final=not exc.retryable)  # its own verdict does not matter
            record.second_opinion(other.model_id, opinion_outcome(exc))
        else:
            elapsed = loop.time() - started
            record.waited(elapsed)
            record.attempt_served(other, elapsed, served.first_output_s)
            record.second_opinion(other.model_id, SERVED)
            return served
    raise refusal


def _fits_context(offer: Offer, floor: int | None) -> bool:
    """After a context-length refusal, an offer is worth trying when its known context is larger than
    the refusing offer's, or unknown (a refusing offer of unknown context rules nothing out)."""
    return floor is None or offer.context_length is None or offer.context_length > floor


def _first_output_wait(ctx: AttemptContext, offer: Offer, stream: bool, configured_s: float, *, more: bool) -> float:
    """Seconds an attempt may wait for its first output: the offer's learned deadline while another
    offer is left to try (`more`), else the configured `first_byte_timeout_s`."""
    return ctx.state.first_output.deadline_s(offer.key, stream, configured_s) if more else configured_s


def first_output_timeout(waited_s: float, configured_s: float) -> FirstByteTimeout:
    """The failure of an attempt that waited `waited_s` without output, naming the bound that ran out."""
    if waited_s < configured_s:
        message = (
            f"no first output within {waited_s:.3g} s, this offer's learned deadline "
            f"(first_byte_timeout_s is {configured_s:g} s)"
        )
        return FirstOutputLate(message, waited_s=waited_s)
    return FirstByteTimeout(f"no first output within first_byte_timeout_s ({configured_s:g} s)", waited_s=waited_s)


async def _try_offer(ctx: AttemptContext, call: Call, offer: Offer, *, more: bool) -> Served:
    """One attempt: sent, then read up to its verdict (its response is closed unless it is served)."""
    settings = call.live.settings
    endpoint, request = call.endpoint, call.request
    loop = asyncio.get_running_loop()
    remaining = call.deadline - loop.time()
    # signed for this provider as its API takes it; the client's own headers (its anthropic-version) win
    headers = {**call.live.signed_headers.get(offer.provider_slug, NOT_SIGNED), **call.headers}
    if offer.api == endpoint.api:  # the client's own API: the request as it came, `model` rewritten
        path, output, check, dialect = call.path, endpoint.events.output, endpoint.check, None
    else:  # another API: spoken in its own (`proxy.failover.dialect`)
        path, output, check, dialect = _spoken(call, offer)
    sending = _Sending(ctx, call, offer, headers, dialect)
    wait = _first_output_wait(ctx, offer, request.stream, settings.first_byte_timeout_s, more=more)
    ctx.state.take(offer, time.time())
    response: UpstreamResponse | None = None
    started = loop.time()
    reading = False  # the status line is in: the rest of a non-streaming answer has until the deadline
    try:
        try:
            async with asyncio.timeout(min(wait, remaining)) as timer:
                response = await sending.send(offer.base_url + path)
                if request.stream:
                    first = await first_output(response, output)
                    ident = response_id_of(first) if endpoint.events.names_response else None
                    first_output_s = loop.time() - started
                    return Served(offer, response, first, None, ident, first_output_s, dialect, sending.ask)
                if endpoint.answer == "binary":
                    first = await first_bytes(response)
                    return Served(offer, response, first, first_output_s=loop.time() - started)
                first_output_s = loop.time() - started
                reading = True
                timer.reschedule(max(call.deadline, loop.time() + 0.001))
                raw = await response.read()
        except TimeoutError:
            raise _timed_out(reading or remaining <= wait, wait, settings.first_byte_timeout_s) from None
        parsed = None
        if endpoint.answer == "json" or (endpoint.answer == "document" and is_json(response)):
            parsed = judge_body(raw, check)
        response.release()
        if dialect is not None:
            parsed, raw = _translated(dialect, parsed, raw, request)
        return Served(offer, response, raw, parsed, first_output_s=first_output_s, dialect=dialect)
    except BaseException:
        if response is not None:
            response.close()
        raise


def _spoken(call: Call, offer: Offer) -> tuple[str, OutputPredicate, AnswerCheck | None, Dialect]:
    """The upstream path and verdict of an attempt at an offer of another API than the client's:
    its dialect's (`proxy.failover.dialect`)."""
    dialect = call.endpoint.dialect_for(offer)
    assert dialect is not None, "only offers a JSON request can be spoken to"
    return dialect.upstream, dialect.output, dialect.check, dialect


class _Sending:
    """One attempt's request to its offer, with the proxy's ask for a stream's usage when it needs
    one (`proxy.failover.usage_ask`): an offer that refuses the ask is asked again at once without
    it, on the same attempt (an offer's limit: nothing is recorded against it), and remembered."""

    __slots__ = ("ask", "call", "ctx", "dialect", "headers", "offer")

    def __init__(
        self, ctx: AttemptContext, call: Call, offer: Offer, headers: dict[str, str], dialect: Dialect | None
    ) -> None:
        self.ctx, self.call, self.offer, self.headers, self.dialect = ctx, call, offer, headers, dialect
        self.ask = _usage_ask(ctx.state, call, offer, dialect)

    def body(self) -> Body:
        request, offer, dialect = self.call.request, self.offer, self.dialect
        asked = self.ask is UsageAsk.ASKED
        if dialect is not None:  # the headers not for that API are dropped
            assert isinstance(request, ClientRequest), "only JSON requests have dialects"
            return dialect.encode_for(request.body, offer, self.headers, usage_ask=asked or not dialect.asks_usage)
        if asked:
            assert isinstance(request, ClientRequest), "only JSON requests are asked for usage"
            return request.encode_for(offer.provider_model_id, usage_ask=True)
        return request.encode_for(offer.provider_model_id)

    async def send(self, url: str) -> UpstreamResponse:
        """The offer's response of status < 300; raises the `UpstreamStatus` of any other."""
        response = await self.ctx.client.send(url, self.headers, self.body(), self.call.method)
        if response.status < 300:
            return response
        refusal = await self._refusal(response)
        if self.ask is not UsageAsk.ASKED or not refuses_usage_ask(refusal.status, refusal.body):
            raise refusal
        self.ctx.state.refused_usage_ask(self.offer)
        self.ask = UsageAsk.REFUSED
        response = await self.ctx.client.send(url, self.headers, self.body(), self.call.method)
        if response.status < 300:
            return response
        raise await self._refusal(response)

    async def _refusal(self, response: UpstreamResponse) -> UpstreamStatus:
        try:
            return await status_error(response, partial(terms_for, self.call.request, self.offer))
        finally:
            response.close()


def _usage_ask(state: RuntimeState, call: Call, offer: Offer, dialect: Dialect | None) -> UsageAsk:
    """Does this attempt ask for the stream's usage? Only a stream whose client did not ask itself,
    of an endpoint (`Endpoint.usage_ask`) or dialect (`Dialect.asks_usage`) that can be asked."""
    request = call.request
    if not request.stream or not isinstance(request, ClientRequest):
        return UsageAsk.NONE
    if dialect is not None:
        asks = dialect.asks_usage
    else:
        asks = call.endpoint.usage_ask and not client_asked_usage(request.body)
    if not asks:
        return UsageAsk.NONE
    return UsageAsk.REFUSED if state.refuses_usage_ask(offer) else UsageAsk.ASKED


def _translated(
    dialect: Dialect, parsed: dict[str, Any] | None, raw: bytes, request: ForwardRequest
) -> tuple[dict[str, Any] | None, bytes]:
    """A whole answer of the offer's API as the client's (parsed, and the bytes to serve)."""
    if parsed is None:
        return parsed, raw
    assert isinstance(request, ClientRequest), "only JSON requests have dialects"
    return dialect.answered(parsed, request.body)


def _timed_out(deadline: bool, waited_s: float, configured_s: float) -> UpstreamError:
    """The failure of an attempt whose timer ran out: the request's deadline, or its first output's."""
    return DeadlineExceeded() if deadline else first_output_timeout(waited_s, configured_s)


def _soonest_usable(state: RuntimeState, ranking: Ranking) -> float | None:
    """When every offer is cooling down, the seconds until the first one is usable again."""
    now = time.time()
    untils = [state.view(o, now).cooldown_until for o in ranking.offers + ranking.cooling]
    if not untils or any(u <= now for u in untils):
        return ranking.retry_after_s
    return min(untils) - now

