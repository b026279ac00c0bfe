"""Hedged requests: when the first offer is slow to its first output, the next offer is started alongside.

Opt-in per canonical model: `hedge = true` under `[proxy]` or on a `[[models]]` entry (which wins).
A request is hedged when all of these hold:
- hedging is on for its model, the request allows fallbacks (`allow_fallbacks: false` never hedges),
  and it has a second offer to try;
- its first offer has a learned hedge delay (the p90 of its time to first output,
  `proxy.runtime.first_output`; none until the offer has enough history);
- that first offer has produced no output (and no failure) when the delay has passed;
- the model's hedge budget has a whole hedge left (`HedgeBudget`).
The first attempt to produce output is committed; the other is cancelled at once, which closes its
connection (the attempt's `finally`). A failure of one leaves the other running. Both attempts are in
the answer's `attempts` (the second with `hedge: true`), the access line and
`gatewayz_hedges_total{model,outcome}`: `won` (the hedge served), `lost` (the first attempt served),
`cancelled` (neither served: both failed, or the request ended first), `over_budget` (a hedge was due
but the budget was spent).

The budget, like Envoy's retry budget but counted in requests rather than in concurrent ones: every
request of a hedged model adds `hedge_budget` to the model's balance (at most `BUDGET_CAP`), a hedge
takes 1. So since start-up a model's hedges never exceed `hedge_budget` x its requests, and over any
stretch of time at most `BUDGET_CAP` more than that share: an outage where every first offer is slow
adds at most that share of load, never doubles it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from proxy.errors import UpstreamError
from proxy.failover.client_request import ClientRequest
from proxy.runtime.first_output import FirstOutputTimes
from proxy.runtime.live import HedgeRule, LiveConfig
from proxy.types import Offer

BUDGET_CAP = 10.0  # hedges a quiet model may save up for a burst
WON, LOST, CANCELLED, OVER_BUDGET = "won", "lost", "cancelled", "over_budget"


class HedgeBudget:
    """One model's balance of hedges; pure (no clock)."""

    __slots__ = ("balance", "share")

    def __init__(self, share: float) -> None:
        self.share = share
        self.balance = 0.0

    def deposit(self) -> None:
        """One request of the model arrived."""
        self.balance = min(BUDGET_CAP, self.balance + self.share)

    def take(self) -> bool:
        """Spend one hedge if the balance holds one (with room for float rounding of the deposits)."""
        if self.balance + 1e-9 < 1.0:
            return False
        self.balance = max(0.0, self.balance - 1.0)
        return True


class HedgeBudgets:
    """Every hedged model's `HedgeBudget`, made on its first request; the rules are the live config's
    (`proxy.runtime.live.LiveConfig.hedge_rule`), so a reload changes a model's share, never its balance."""

    def __init__(self) -> None:
        self.budgets: dict[str, HedgeBudget] = {}

    def admit(self, model_id: str, rule: HedgeRule) -> HedgeBudget | None:
        """A request of `model_id` starts: its budget, credited for it, or None when hedging is off."""
        if not rule.enabled:
            return None
        budget = self.budgets.get(model_id)
        if budget is None:
            budget = self.budgets[model_id] = HedgeBudget(rule.budget)
        budget.share = rule.budget
        budget.deposit()
        return budget


@dataclass(frozen=True, slots=True)
class HedgePlan:
    """A request that may be hedged: its first two offers, the first one's hedge delay, the budget."""

    first: Offer
    second: Offer
    delay_s: float
    budget: HedgeBudget


def hedge_plan(
    live: LiveConfig,
    budgets: HedgeBudgets,
    times: FirstOutputTimes,
    offers: Sequence[Offer],
    *,
    request: ClientRequest,
) -> HedgePlan | None:
    """The first two offers, the first one's hedge delay and the model's budget (credited for this
    request), when this request may be hedged; None otherwise."""
    if not live.hedging or not offers:
        return None
    budget = budgets.admit(offers[0].model_id, live.hedge_rule(offers[0].model_id))
    if budget is None or len(offers) < 2 or live.settings.max_attempts < 2 or not request.prefs.allow_fallbacks:
        return None
    delay = times.hedge_delay_s(offers[0].key, request.stream)
    return None if delay is None else HedgePlan(offers[0], offers[1], delay, budget)


@dataclass(slots=True)
class Leg:
    """One attempt of a race: `result` is the answer, the attempt's error, or None (cancelled)."""

    offer: Offer
    hedge: bool
    started: float
    task: asyncio.Future[object]
    elapsed: float = 0.0

    @property
    def result(self) -> object:
        if self.task.cancelled():
            return None
        return self.task.exception() or self.task.result()


@dataclass(slots=True)
class Race:
    legs: list[Leg]
    outcome: str | None  # None: no hedge was due (the first attempt ended within its hedge delay)
    elapsed_s: float  # from the first attempt's start to the race's end


Start = Callable[[Offer], Awaitable[object]]


async def race(start: Start, plan: HedgePlan) -> Race:
    """Run `plan.first`; if it has not ended after `plan.delay_s`, start `plan.second` alongside (budget permitting),
    until one answers (the other is cancelled and awaited, so its connection is closed) or both fail.
    `start(offer)` returns the attempt's answer or raises its `UpstreamError`. Cancelling the caller
    cancels both attempts."""
    loop = asyncio.get_running_loop()
    legs = [Leg(plan.first, False, loop.time(), asyncio.ensure_future(start(plan.first)))]
    outcome: str | None = None
    try:
        done, _ = await asyncio.wait([legs[0].task], timeout=plan.delay_s)
        if not done:
            if plan.budget.take():
                legs.append(Leg(plan.second, True, loop.time(), asyncio.ensure_future(start(plan.second))))
                outcome = await _until_one_answers(legs)
            else:
                outcome = OVER_BUDGET
                await asyncio.wait([legs[0].task])
    finally:
        await _cancel_rest(legs)
    now = loop.time()
    for leg in legs:
        if leg.elapsed == 0.0:
            leg.elapsed = now - leg.started
    return Race(legs, outcome, now - legs[0].started)


async def _until_one_answers(legs: list[Leg]) -> str:
    loop = asyncio.get_running_loop()
    pending = {leg.task for leg in legs}
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for leg in legs:
            if leg.task in done:
                leg.elapsed = loop.time() - leg.started
        winner = _winner(legs, done)
        if winner is not None:
            return WON if winner.hedge else LOST
        if any(_final(leg.result) for leg in legs if leg.task in done):
            return CANCELLED  # the client's own mistake: every provider would say the same
    return CANCELLED


def _winner(legs: Sequence[Leg], done: set[asyncio.Future[object]]) -> Leg | None:
    for leg in legs:
        if leg.task in done and not leg.task.cancelled() and leg.task.exception() is None:
            return leg
    return None


def _final(result: object) -> bool:
    return isinstance(result, UpstreamError) and not result.retryable


async def _cancel_rest(legs: Sequence[Leg]) -> None:
    """Cancel every leg still running and wait for it, so its `finally` has closed its response."""
    loop = asyncio.get_running_loop()
    running = [leg for leg in legs if not leg.task.done()]
    for leg in running:
        leg.task.cancel()
    for leg in running:
        with contextlib.suppress(asyncio.CancelledError, UpstreamError):
            await leg.task
        leg.elapsed = loop.time() - leg.started
