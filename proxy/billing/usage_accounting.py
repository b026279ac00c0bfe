"""OpenRouter's usage accounting: the answer's `usage` with its cost, as OpenRouter gives it. Pure.

A request with `"usage": {"include": true}` (https://openrouter.ai/docs/use-cases/usage-accounting)
gets, in the `usage` of its answer (a whole answer's, or a stream's final usage chunk):

    cost                    USD, a JSON number written exactly (`proxy.billing.cost.cost_text`): the
                            request's cost as the record has it (`proxy.failover.accounting.request_cost`);
                            null for an unpriced offer (`proxy.billing.cost`)
    cost_details            {"upstream_inference_cost": the same}: the provider's price is the proxy's
    prompt_tokens_details   {"cached_tokens": N}, when the provider gave none
    completion_tokens_details  {"reasoning_tokens": N}, when the provider gave none
    total_tokens            prompt + completion, when the provider gave none

The provider's own fields are kept as they came.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson

from proxy.billing.cost import cost_text, cost_usd
from proxy.types import Prices
from proxy.upstream.usage import Usage, counts_of


def accounted_usage(usage_object: Mapping[str, Any], usage: Usage | None, cost: Decimal | None) -> dict[str, Any]:
    """`usage_object` (the provider's) with the cost and token details above."""
    out = dict(usage_object)
    if usage is not None:
        out.setdefault("prompt_tokens", usage.prompt_tokens)
        out.setdefault("completion_tokens", usage.completion_tokens)
        out.setdefault("total_tokens", usage.prompt_tokens + usage.completion_tokens)
        if not isinstance(out.get("prompt_tokens_details"), dict):
            out["prompt_tokens_details"] = {"cached_tokens": usage.cached_prompt_tokens}
        if not isinstance(out.get("completion_tokens_details"), dict):
            out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    number = None if cost is None else orjson.Fragment(cost_text(cost).encode())
    out["cost"] = number
    out["cost_details"] = {"upstream_inference_cost": number}
    return out


def priced_usage(usage_object: dict[str, Any], prices: Prices) -> dict[str, Any]:
    """A stream's usage object, accounted at the serving offer's `prices` (the relay's `account` stage)."""
    usage = counts_of(usage_object)
    return accounted_usage(usage_object, usage, cost_usd(usage, prices))


def answer_with_cost(body: bytes, usage: Usage | None, cost: Decimal | None) -> bytes:
    """A whole JSON answer with its `usage` accounted (`body` itself when it is not a JSON object)."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(answer, dict):
        return body
    found = answer.get("usage")
    answer["usage"] = accounted_usage(found if isinstance(found, dict) else {}, usage, cost)
    return orjson.dumps(answer)
