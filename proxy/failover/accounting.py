"""Accounting for one request: everything that follows from its record, in one place.

`request_ended(record)` runs once, when the request ends (served, failed, refused, cut short, left
by its client), and reads only the record (`proxy.failover.record`):
- metrics: the request by route, model and outcome, its duration and (served) the proxy's own
  overhead; each attempt by result; each failover (a failed attempt another attempt followed); each
  move of the model chain; the hedge race; the serving provider's time to first output; tokens and cost;
- runtime state: the served offer's success (or, for a stream that broke after commit, its failure)
  for passive health and the circuit; the learned first-output time of each attempt that produced
  output or timed out waiting for it (`proxy.runtime.first_output`); none of it for a request whose
  record is not `measured` (count_tokens: a free call, which some Anthropic-compatible providers
  answer 404, must neither open an offer's circuit nor teach it a first-output time);
- the spend of the request's client key (`proxy.billing.spend.SpendLedger.add`), for its budget;
- the access line: one JSON object per request (no prompt text, no key: the key's name);
- the usage record (`proxy.billing.usage_record`, built by `usage_record_of`): handed to
  `record_usage` (the gateway's `proxy.billing.writer.UsageWriter.add`), which only queues it.

`attempt_failed(record, tried)` is the record's `on_failure` hook: a failed attempt's effect on the
runtime state (its cooldown from `Retry-After`, the circuit it may open, an account failure that
cools the whole provider) cannot wait for the request's end, since other requests must skip that
offer at once, and a stream that follows may run for minutes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from decimal import Decimal
from functools import partial

import orjson

from proxy.billing.cost import cost_text, cost_usd
from proxy.billing.spend import SpendLedger
from proxy.billing.usage_record import Request, UsageRecord, build_usage_record
from proxy.config import ProxySettings
from proxy.errors import ConnectFailed, ConnectTimeout, ErrorInAnswer, FirstByteTimeout, UpstreamError, UpstreamStatus
from proxy.failover.judge.refusals import Cooldown, is_account_failure
from proxy.failover.record import RequestRecord, Tried
from proxy.runtime.metrics import Metrics
from proxy.runtime.state import RuntimeState

access_log = logging.getLogger("gatewayz.access")


class Accounting:
    """Reads records into the metrics, the runtime state and the access log of one instance."""

    def __init__(self, state: RuntimeState, metrics: Metrics, spend: SpendLedger | None = None) -> None:
        self.state = state
        self.metrics = metrics
        self.spend = spend
        # `failover serve` sets this to write access lines straight to its batched stream, past the
        # logging machinery (which costs more than the rest of the line); otherwise the logger is used.
        self.write_access: Callable[[str], None] | None = None
        # the usage writer's `add(request_id, make)` (None: no usage records, as without a database):
        # queues the record's builder, never waits; the writer builds it off the request path
        self.record_usage: Callable[[str, Callable[[], UsageRecord]], None] | None = None

    def attempt_failed(self, record: RequestRecord, tried: Tried) -> None:
        """A failed attempt's effect on the runtime state, now (see the module docstring)."""
        error = tried.error
        if error is None:
            return
        offer, now = tried.offer, time.time()
        counts = not isinstance(error, UpstreamStatus) or error.counts
        if tried.attempt.retryable and error.retryable and counts and record.measured:
            self.state.record_failure(
                offer,
                error.outcome,
                now,
                connection=isinstance(error, ConnectFailed | ConnectTimeout),
                cooldown_s=_cooldown(self.state.settings, error),
                slow=isinstance(error, FirstByteTimeout),
            )
        if _account_failure(error):
            self.state.cool_provider(offer.provider_slug, now)

    def request_ended(self, record: RequestRecord) -> None:
        elapsed = time.perf_counter() - record.started
        metrics = self.metrics
        metrics.count_request(record.route, record.model, record.outcome, elapsed)
        if record.outcome == "ok":
            metrics.observe_overhead(max(0.0, elapsed - record.upstream_s))
        self._attempts(record)
        for from_model, to_model in record.fallbacks:
            metrics.count_model_fallback(from_model, to_model)
        if record.hedge is not None and record.tried:
            metrics.count_hedge(record.tried[0].offer.model_id, record.hedge)
        if record.opinion is not None:
            metrics.count_second_opinion(*record.opinion)
        cost = request_cost(record)
        if self.spend is not None and record.key_name:
            self.spend.add(record.key_name, cost)
        served, usage = record.served, record.usage
        if served is not None and usage is not None:
            metrics.count_usage(served.offer, usage.prompt_tokens, usage.completion_tokens, float(cost or 0))
        if self.record_usage is not None:
            self.record_usage(record.request_id, partial(usage_record_of, record, elapsed, cost))
        line = access_line(record, elapsed, cost)
        if self.write_access is not None:
            self.write_access(line)
        elif access_log.isEnabledFor(logging.INFO):
            access_log.info(line)

    def _attempts(self, record: RequestRecord) -> None:
        metrics, state = self.metrics, self.state
        tried = record.tried
        now = time.time()
        for index, entry in enumerate(tried):
            attempt, offer = entry.attempt, entry.offer
            metrics.count_attempt(offer, attempt.outcome)
            failed = entry.error is not None
            if entry.error is not None and attempt.retryable and entry.error.retryable and index + 1 < len(tried):
                metrics.count_failover(offer, attempt.outcome)
            if not record.measured:
                continue  # count_tokens: its answers say nothing of the offer's health or speed
            if entry.first_output_s is not None:  # it answered: a whole answer, or a stream up to commit
                metrics.observe_ttfb(offer, attempt.elapsed_ms / 1000)
                state.first_output.record(offer.key, record.stream, entry.first_output_s)
                if failed:  # a stream that broke after commit
                    state.record_failure(offer, attempt.outcome, now)
                else:
                    state.record_success(offer, attempt.elapsed_ms, now)
            elif isinstance(entry.error, FirstByteTimeout) and entry.error.waited_s > 0:
                state.first_output.record(offer.key, record.stream, entry.error.waited_s)


def request_cost(record: RequestRecord) -> Decimal | None:
    """What the request cost in USD: the served offer's price of its usage (`proxy.billing.cost`);
    a request no offer served costs nothing (its failed attempts are free); None: the offer is unpriced."""
    served = record.served
    if served is None:
        return Decimal(0)
    return cost_usd(record.usage, served.offer.prices)


def usage_record_of(record: RequestRecord, elapsed_s: float, cost: Decimal | None) -> UsageRecord:
    """The request's usage record (`proxy.billing.usage_record`): `cost` is `request_cost(record)`,
    priced at the offer that served (its prices recorded beside it); the failed attempts are listed
    at no cost."""
    served = record.served
    request = Request(
        record.request_id, record.received_at, record.key_name, record.route, record.asked_model, record.model,
        record.status, record.outcome, record.stream, record.finish_reason,
    )  # fmt: skip
    return build_usage_record(
        request,
        record.attempts,
        None if served is None else served.attempt,
        record.usage,
        prices=None if served is None else served.offer.prices,
        cost=cost,
        elapsed_s=elapsed_s,
        first_output_s=None if served is None else served.first_output_s,
    )


def access_line(record: RequestRecord, elapsed_s: float, cost: Decimal | None = None) -> str:
    """The request's access log line: what happened, never what was said; its tokens and `cost_usd`
    (decimal text; null when the offer that served is unpriced)."""
    tried = record.tried
    served = record.served
    usage = record.usage
    return orjson.dumps(
        {
            "request_id": record.request_id,
            "key": record.key_name or None,
            "route": record.route,
            "model": record.model,
            "provider": None if served is None else served.offer.provider_slug,
            "attempts": len(tried),
            "tried": [f"{t.attempt.provider}:{t.attempt.outcome}" for t in tried],
            "hedge": record.hedge,
            "status": record.status,
            "outcome": record.outcome,
            "latency_ms": round(elapsed_s * 1000, 2),
            "prompt_tokens": 0 if usage is None else usage.prompt_tokens,
            "completion_tokens": 0 if usage is None else usage.completion_tokens,
            "cost_usd": None if cost is None else cost_text(cost),
        }
    ).decode()


def _account_failure(error: UpstreamError) -> bool:
    """The provider refused its own account (key, billing, quota), in a status or inside a 200."""
    if isinstance(error, UpstreamStatus):
        return error.cooldown == Cooldown.PROVIDER
    return isinstance(error, ErrorInAnswer) and is_account_failure(error.message)


def _cooldown(settings: ProxySettings, error: UpstreamError) -> float | None:
    """How long a provider asked us to stay away: its Retry-After, or a short default on 429."""
    if not isinstance(error, UpstreamStatus) or error.cooldown != Cooldown.OFFER:
        return None
    if error.retry_after_s is not None:
        return error.retry_after_s
    return settings.default_cooldown_s if error.status == 429 else None
