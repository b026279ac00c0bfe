"""What one answer cost, exactly, from the usage it reported and the prices of the offer that served. Pure.

Prices are kept in the database as NUMERIC (USD per token, and per request) and reach the request
path as floats (`proxy.types.Offer`); the offer turns each back into the decimal it was written as
once, when it is made (`Offer.prices`: `Decimal(repr(price))`, the shortest text that round-trips,
exact for every price of up to 15 significant digits, which covers every listing seen), and the cost
is computed in decimal arithmetic, never as a float product:

    cost = (prompt_tokens - cached_prompt_tokens) x prompt price
         + cached_prompt_tokens x cached prompt price   (no cached price: the prompt price)
         + completion_tokens x completion price          (reasoning tokens are completion tokens)
         + the price per request

The rule for an offer with no price: a part with no price costs nothing, and an offer with none of
the four prices is *unpriced*: its cost is None (the usage record stores NULL and says so), never a
made-up zero that a platform would bill as free. A request that no offer served costs nothing: the
failed attempts are recorded at no cost. Cached prompt tokens are part of `prompt_tokens` and
reasoning tokens part of `completion_tokens` (OpenAI's usage; OpenRouter lists `input_cache_read`
as the cached price: https://openrouter.ai/docs/api-reference/list-available-models).
"""

from __future__ import annotations

from decimal import Decimal

from proxy.types import UNPRICED, Prices
from proxy.upstream.usage import Usage

ZERO = Decimal(0)


def cost_usd(usage: Usage | None, prices: Prices) -> Decimal | None:
    """The cost in USD of an answer with `usage` (None: none reported, only the request price) at
    `prices`; None when the offer is unpriced (see the module docstring)."""
    if prices == UNPRICED:
        return None
    prompt, cached_price, completion, request = prices
    cost = request or ZERO
    if usage is not None:
        cached = min(usage.cached_prompt_tokens, usage.prompt_tokens)
        cost += (usage.prompt_tokens - cached) * (prompt or ZERO)
        cost += cached * (cached_price if cached_price is not None else prompt or ZERO)
        cost += usage.completion_tokens * (completion or ZERO)
    return cost


def cost_text(cost: Decimal) -> str:
    """A cost as plain decimal text (never an exponent: `0.000042`, not `4.2E-5`)."""
    text = format(cost, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
