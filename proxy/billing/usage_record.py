"""The usage record of one request: the row `usage_records` keeps (migration 0009), and its shapes. Pure.

A `UsageRecord` has one field per column, in the table's order, so a batch of them is what
`copy_records_to_table` takes as it is. It is built once per request by the accounting step
(`proxy.failover.accounting.usage_record_of`) from the request's record, with plain values, so that
this module needs nothing of the failover layer:

    request_id      the proxy's own request id (never a provider's response id): the row's key
    created_at      when the request arrived (UTC)
    key_name        the client key's name ("" when keys are unnamed or not configured), never the key
    model           the canonical model that served, else the one asked for
    provider, provider_model_id   the offer that served (None: no offer served)
    attempts        JSON text: [{provider, provider_model_id, model, outcome, elapsed_ms, hedge}], in order;
                    only the serving attempt is priced, a failed attempt costs nothing
    *_tokens        the answer's usage (0 when none was reported); `usage_estimated`: counted by the proxy
    price_*         the serving offer's prices (USD per token, per request), None where it has none
    priced, cost_usd   `proxy.billing.cost`: cost None (NULL) and priced False for an unpriced offer
    latency_ms      arrival to the end of the answer; `first_output_ms` the serving attempt's time to
                    its first output (None: no offer served)

Two more shapes: a spool line (`spool_line` / `from_spool_line`: one JSON object, money as decimal
text so nothing is rounded), and OpenRouter's generation object (`generation_json`, the `data` of
`GET /api/v1/generation`: https://openrouter.ai/docs/api-reference/get-a-generation).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

from proxy.billing.cost import cost_text
from proxy.types import UNPRICED, Attempt, Prices
from proxy.upstream.usage import Usage

NO_USAGE = Usage()
MONEY = ("price_prompt", "price_cached_prompt", "price_completion", "price_request", "cost_usd")


class UsageRecord(NamedTuple):
    request_id: str
    created_at: datetime
    key_name: str
    route: str
    asked_model: str
    model: str
    provider: str | None
    provider_model_id: str | None
    attempts: str  # JSON text (the jsonb column takes it as it is)
    status: int
    outcome: str
    streamed: bool
    prompt_tokens: int
    cached_prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    usage_estimated: bool
    price_prompt: Decimal | None
    price_cached_prompt: Decimal | None
    price_completion: Decimal | None
    price_request: Decimal | None
    priced: bool
    cost_usd: Decimal | None
    latency_ms: float
    first_output_ms: float | None
    finish_reason: str | None


COLUMNS = UsageRecord._fields


class Request(NamedTuple):
    """What the request was and how it ended, as plain values (the builder's input)."""

    request_id: str
    received_at: float  # wall clock, seconds since the epoch
    key_name: str
    route: str
    asked_model: str
    model: str
    status: int
    outcome: str
    streamed: bool
    finish_reason: str | None


def attempt_json(attempt: Attempt) -> dict[str, object]:
    return {
        "provider": attempt.provider,
        "provider_model_id": attempt.provider_model_id,
        "model": attempt.model,
        "outcome": attempt.outcome,
        "elapsed_ms": round(attempt.elapsed_ms, 1),
        "hedge": attempt.hedge,
    }


def build_usage_record(
    request: Request,
    attempts: Sequence[Attempt],
    served: Attempt | None,
    usage: Usage | None,
    *,
    prices: Prices | None,
    cost: Decimal | None,
    elapsed_s: float,
    first_output_s: float | None,
) -> UsageRecord:
    """The row of one request. `served` is the attempt that answered (None: none did), `prices` its
    offer's (None: none served), `cost` `request_cost`'s answer (None: the offer is unpriced)."""
    tokens = usage or NO_USAGE
    price = prices or UNPRICED
    return UsageRecord(
        request.request_id,
        datetime.fromtimestamp(request.received_at, UTC),
        request.key_name,
        request.route,
        request.asked_model,
        request.model,
        None if served is None else served.provider,
        None if served is None else served.provider_model_id,
        orjson.dumps([attempt_json(a) for a in attempts]).decode(),
        request.status,
        request.outcome,
        request.streamed,
        tokens.prompt_tokens,
        tokens.cached_prompt_tokens,
        tokens.completion_tokens,
        tokens.reasoning_tokens,
        tokens.estimated,
        *price,
        cost is not None,
        cost,
        round(elapsed_s * 1000, 3),
        None if first_output_s is None else round(first_output_s * 1000, 3),
        request.finish_reason,
    )


def spool_line(record: UsageRecord) -> bytes:
    """One line of the spool file: the record as a JSON object, money as decimal text, then a newline."""
    values: dict[str, Any] = record._asdict()
    values["created_at"] = record.created_at.isoformat()
    for name in MONEY:
        if values[name] is not None:
            values[name] = str(values[name])
    return orjson.dumps(values) + b"\n"


def from_spool_line(line: bytes) -> UsageRecord:
    """The record of one spool line; `ValueError` when the line is not one (a torn last line)."""
    try:
        values = orjson.loads(line)
        values["created_at"] = datetime.fromisoformat(values["created_at"])
        for name in MONEY:
            if values[name] is not None:
                values[name] = Decimal(values[name])
        return UsageRecord(**values)
    except (orjson.JSONDecodeError, KeyError, TypeError, ArithmeticError) as exc:
        raise ValueError(f"not a usage record: {exc}") from None


def _ms(value: float | None) -> int | None:
    return None if value is None else round(value)


def generation_json(record: UsageRecord) -> dict[str, object]:
    """The record in OpenRouter's generation shape: `total_cost` in USD (a number; None when
    unpriced), `latency` (arrival to the end, ms), `generation_time` (the serving provider's time, ms),
    token counts as the provider reported them (`native_tokens_*`: this proxy does not re-count them).
    Fields OpenRouter has and this proxy does not (app, moderation, media) are left out; `cost_usd`
    adds the exact decimal text beside `total_cost`."""
    elapsed = sum(a["elapsed_ms"] for a in orjson.loads(record.attempts) if a["outcome"] == "ok")
    cost = record.cost_usd
    return {
        "id": record.request_id,
        "total_cost": None if cost is None else float(cost),
        "cost_usd": None if cost is None else cost_text(cost),
        "created_at": record.created_at.isoformat(),
        "model": record.model,
        "provider_name": record.provider,
        "provider_model_id": record.provider_model_id,
        "streamed": record.streamed,
        "cancelled": record.outcome == "client_disconnected",
        "latency": _ms(record.latency_ms),
        "generation_time": _ms(elapsed) if record.provider is not None else None,
        "first_output_ms": _ms(record.first_output_ms),
        "finish_reason": record.finish_reason,
        "native_finish_reason": record.finish_reason,
        "tokens_prompt": record.prompt_tokens,
        "tokens_completion": record.completion_tokens,
        "native_tokens_prompt": record.prompt_tokens,
        "native_tokens_completion": record.completion_tokens,
        "native_tokens_reasoning": record.reasoning_tokens,
        "native_tokens_cached": record.cached_prompt_tokens,
        "usage_estimated": record.usage_estimated,
        "status": record.status,
        "outcome": record.outcome,
        "attempts": orjson.loads(record.attempts),
    }
