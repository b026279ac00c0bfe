"""The ledger of one request: what happened to it, written only through its own methods.

A `RequestRecord` is made when a request arrives and filled in by the parts that serve it: the
handler names the model and the answer it sent, the model chain each move to a fallback model, the
attempt loop (and a hedge's race) every attempt with its offer, outcome, timings and hedge flag, the
relay how a committed stream ended. Nothing else keeps a list of attempts or an outcome. When the
request ends, `proxy.failover.accounting` reads the record once: metrics, passive health, learned
first-output times and the access line. The 503's attempts list and the answer's `x-gatewayz-*`
headers are built from it as well.

The phase is one small state machine:

    RECEIVING ──▶ ROUTING ──▶ STREAMING | RELAYING ──▶ FINISHED
        └─────────────┴─────────────┴────────────────▶ DISCONNECTED | SHUT_DOWN

- RECEIVING: the body is being read.  ROUTING: offers are chosen and tried; nothing has been sent.
- STREAMING: a stream's 200 went out, its final event has not: only an in-band error can end it now.
- RELAYING: a binary answer's 200 went out: only dropping the connection can end it early.
- FINISHED: the client has its whole answer (or error); leaving now changes nothing.
- DISCONNECTED: the client left before that.  SHUT_DOWN: the server stopped waiting for the answer.

One attempt's failure may matter to other requests at once (a `Retry-After` cooldown, an opened
circuit): the record hands each failed attempt to its `on_failure` hook as it is recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import NamedTuple

from proxy.errors import UpstreamError
from proxy.types import Attempt, Offer
from proxy.upstream.usage import Usage

CANCELLED = "cancelled"  # an attempt cut short because the other attempt of a hedged request answered first
CANCELLED_DETAIL = "cancelled: the other attempt of the hedged request answered first"


class Phase(StrEnum):
    RECEIVING = "receiving"
    ROUTING = "routing"
    STREAMING = "streaming"
    RELAYING = "relaying"
    FINISHED = "finished"
    DISCONNECTED = "disconnected"
    SHUT_DOWN = "shut_down"


ENDED = frozenset({Phase.FINISHED, Phase.DISCONNECTED, Phase.SHUT_DOWN})


class Tried(NamedTuple):
    """One attempt as the record keeps it: its offer, its public entry, and what ended it."""

    offer: Offer
    attempt: Attempt
    error: UpstreamError | None = None  # None: it served, or was cancelled
    first_output_s: float | None = None  # an attempt that answered: its time to its first output


class RequestRecord:
    """What happened to one request. `route` labels it (the client's path, or a route pattern);
    `started` is `time.perf_counter()` at arrival, `received_at` the wall clock (seconds); `measured`
    is False for a request whose attempts say nothing of an offer's health or speed (count_tokens)."""

    __slots__ = (
        "_tried",
        "asked_model",
        "fallbacks",
        "finish_reason",
        "hedge",
        "key_name",
        "measured",
        "model",
        "on_failure",
        "opinion",
        "outcome",
        "phase",
        "received_at",
        "request_id",
        "route",
        "served",
        "started",
        "status",
        "stream",
        "upstream_s",
        "usage",
    )

    def __init__(
        self,
        route: str,
        request_id: str,
        *,
        on_failure: Callable[[RequestRecord, Tried], None] | None = None,
        measured: bool = True,
    ) -> None:
        self.route = route
        self.measured = measured  # its attempts feed offer health and learned times (`Endpoint.measured`)
        self.request_id = request_id
        self.started = time.perf_counter()
        self.received_at = time.time()
        self.on_failure = on_failure
        self.phase = Phase.RECEIVING
        self.asked_model = ""  # the model the client named
        self.model = ""  # the canonical model: the one asked for, then the one that served
        self.stream = False
        self._tried: list[Tried] = []
        self.served: Tried | None = None  # the attempt that answered (read it; `attempt_served` writes it)
        self.upstream_s = 0.0  # time spent waiting on providers (a hedge's overlapping legs once)
        self.fallbacks: list[tuple[str, str]] = []  # (from model, to model), each move of the model chain
        self.hedge: str | None = None  # how the hedge race ended, when one ran (proxy.failover.hedge)
        self.opinion: tuple[str, str] | None = None  # a second opinion: (model, outcome)
        self.status = 0
        self.outcome = "error"
        self.usage: Usage | None = None  # the answer's usage, once known
        self.finish_reason: str | None = None  # why the answer ended, as the provider said (`stop`, `length`, ...)
        self.key_name = ""  # the name of the client key that made the request ("": none, or unnamed)

    # --- the request -----------------------------------------------------------------------------

    def named(self, asked_model: str) -> None:
        """The client asked for `asked_model` (before it is routed, or when it is refused)."""
        self.asked_model = self.model = asked_model

    def routing(self, asked_model: str, model: str, *, stream: bool) -> None:
        """The client asked for `asked_model`, which is canonical `model`: its offers are tried."""
        self.asked_model, self.model, self.stream = asked_model, model, stream
        if self.phase is Phase.RECEIVING:
            self.phase = Phase.ROUTING

    def model_fallback(self, from_model: str, to_model: str) -> None:
        """The model chain moves on (`model` stays the one asked for until an offer serves)."""
        self.fallbacks.append((from_model, to_model))

    # --- attempts --------------------------------------------------------------------------------

    def attempt_failed(
        self, offer: Offer, error: UpstreamError, elapsed_s: float, *, final: bool, hedge: bool = False
    ) -> None:
        """An attempt failed; `final`: its answer is passed to the client (no other offer is tried)."""
        attempt = Attempt(
            offer.provider_slug, offer.provider_model_id, error.outcome, elapsed_s * 1000, not final,
            error.message, offer.model_id, hedge,
        )  # fmt: skip
        tried = Tried(offer, attempt, error)
        self._tried.append(tried)
        if self.on_failure is not None:
            self.on_failure(self, tried)

    def attempt_cancelled(self, offer: Offer, elapsed_s: float, *, hedge: bool) -> None:
        attempt = Attempt(
            offer.provider_slug, offer.provider_model_id, CANCELLED, elapsed_s * 1000, True, CANCELLED_DETAIL,
            offer.model_id, hedge,
        )  # fmt: skip
        self._tried.append(Tried(offer, attempt))

    def attempt_served(self, offer: Offer, elapsed_s: float, first_output_s: float, *, hedge: bool = False) -> None:
        """The attempt answered: a whole answer judged good, or a stream up to its first output."""
        attempt = Attempt(
            offer.provider_slug, offer.provider_model_id, "ok", elapsed_s * 1000, True, "", offer.model_id, hedge
        )
        self.served = Tried(offer, attempt, None, first_output_s)
        self._tried.append(self.served)
        self.model = offer.model_id

    def waited(self, seconds: float) -> None:
        """Time spent waiting on providers: one attempt's, or a hedge race's (its legs overlap)."""
        self.upstream_s += seconds

    def hedged(self, outcome: str) -> None:
        self.hedge = outcome

    def second_opinion(self, model: str, outcome: str) -> None:
        """A refusal of unknown kind was put to an offer of `model` of another provider: `outcome`."""
        self.opinion = (model, outcome)

    # --- the answer ------------------------------------------------------------------------------

    def committed(self, status: int, *, events: bool = True) -> None:
        """The answer's `status` went out ahead of its body: a stream of `events`, else bytes."""
        self.status = status
        if self.phase not in ENDED:
            self.phase = Phase.STREAMING if events else Phase.RELAYING

    def finished(self) -> None:
        """The client has its whole answer (the last byte is on its way): a disconnect changes nothing."""
        if self.phase not in ENDED:
            self.phase = Phase.FINISHED

    def answered(self, status: int, outcome: str, usage: Usage | None = None) -> None:
        """A whole answer is about to go out: its status and outcome (`ok`, an error code, or
        `upstream_<status>` for a provider's refusal passed through)."""
        self.status, self.outcome = status, outcome
        if usage is not None:
            self.usage = usage
        if self.phase not in ENDED:
            self.phase = Phase.FINISHED

    def client_left(self) -> bool:
        """The client disconnected: True (the request is to be cancelled) unless its answer was finished."""
        if self.phase in ENDED:
            return False
        self.phase = Phase.DISCONNECTED
        self.status, self.outcome = 499, "client_disconnected"
        return True

    def shut_down(self, code: str) -> Phase:
        """The server stopped waiting for this answer: the phase it was in, to end it accordingly (an
        answer not yet begun is a 503)."""
        was = self.phase
        if was is Phase.DISCONNECTED:
            return was
        if was in (Phase.RECEIVING, Phase.ROUTING):
            self.status = 503
        self.phase, self.outcome = Phase.SHUT_DOWN, code
        return was

    def relayed(self, outcome: str) -> None:
        """A committed stream or binary answer ended: `ok`, or the failure that broke it."""
        self.outcome = outcome

    def ended_because(self, finish_reason: str | None) -> None:
        """Why the answer ended, as the provider said (`stop`, `length`, `end_turn`, `completed`...)."""
        if finish_reason is not None:
            self.finish_reason = finish_reason

    def reported(self, usage: Usage | None) -> None:
        """The usage a relayed stream reported, however it ended."""
        if usage is not None:
            self.usage = usage

    def stream_broke(self, error: UpstreamError) -> None:
        """After commit, the served attempt failed after all: it is that failure, not `ok`."""
        tried = self.served
        if tried is None:
            return
        attempt = tried.attempt
        broken = Attempt(
            attempt.provider, attempt.provider_model_id, error.outcome, attempt.elapsed_ms, True, error.message,
            attempt.model, attempt.hedge,
        )  # fmt: skip
        self.served = Tried(tried.offer, broken, error, tried.first_output_s)
        self._tried[self._tried.index(tried)] = self.served

    # --- reading it ------------------------------------------------------------------------------

    @property
    def tried(self) -> Sequence[Tried]:
        """Every attempt, in the order they started (read-only: the methods above write it)."""
        return self._tried

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        return tuple(t.attempt for t in self._tried)

    @property
    def attempt_count(self) -> int:
        return len(self._tried)

    def offer_of(self, error: UpstreamError) -> Offer | None:
        """The offer of the attempt that ended with `error` (the refusal a pass-through relays)."""
        return next((t.offer for t in self._tried if t.error is error), None)

    @property
    def last_offer(self) -> Offer | None:
        """The offer of the latest attempt (the one whose answer a pass-through relays)."""
        return self._tried[-1].offer if self._tried else None

    @property
    def provider(self) -> str:
        """The provider that served, or ""."""
        return "" if self.served is None else self.served.offer.provider_slug
