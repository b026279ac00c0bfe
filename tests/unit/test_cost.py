"""The cost of an answer: decimal arithmetic from the offer's prices, and the usage details priced apart."""

from __future__ import annotations

from decimal import Decimal

from proxy.billing.cost import cost_text, cost_usd
from proxy.types import Offer, Prices
from proxy.upstream.usage import Usage, usage_of


def offer(**prices: float | None) -> Offer:
    return Offer("gpt-4", "p", "gpt-4", "http://127.0.0.1:1/v1", "", **prices)  # type: ignore[arg-type]


def test_the_cost_is_exact_where_a_float_product_is_not() -> None:
    prices = offer(pricing_prompt=0.0000003, pricing_completion=0.0000006).prices
    cost = cost_usd(Usage(3, 7), prices)
    assert cost == Decimal("0.0000051")
    assert 3 * 0.0000003 + 7 * 0.0000006 != 0.0000051  # what the float product gave before
    assert cost_text(cost) == "0.0000051"


def test_cached_prompt_tokens_are_priced_at_the_cached_price_or_else_the_prompt_price() -> None:
    usage = Usage(1000, 10, cached_prompt_tokens=800, reasoning_tokens=4)
    cached = offer(pricing_prompt=0.000002, pricing_cached_prompt=0.0000005, pricing_completion=0.000008).prices
    assert cost_usd(usage, cached) == Decimal("0.0004") + Decimal("0.0004") + Decimal("0.00008")
    uncached = offer(pricing_prompt=0.000002, pricing_completion=0.000008).prices
    assert cost_usd(usage, uncached) == Decimal("0.002") + Decimal("0.00008")


def test_the_price_per_request_is_added_once_and_paid_without_usage() -> None:
    prices = offer(pricing_prompt=0.000001, pricing_request=0.005).prices
    assert cost_usd(Usage(10, 0), prices) == Decimal("0.00501")
    assert cost_usd(None, prices) == Decimal("0.005")


def test_an_offer_with_no_price_is_unpriced_not_free() -> None:
    assert cost_usd(Usage(10, 10), offer().prices) is None
    assert not Prices(None, None, None, None).priced
    assert cost_usd(Usage(10, 10), offer(pricing_prompt=0.0).prices) == 0  # a free offer is priced at 0


def test_cost_text_never_uses_an_exponent() -> None:
    assert cost_text(Decimal("4.2E-5")) == "0.000042"
    assert cost_text(Decimal("0E-10")) == "0"
    assert cost_text(Decimal("12.50")) == "12.5"


def test_usage_details_are_read_in_each_api_s_names() -> None:
    openai = {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
              "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0}}  # fmt: skip
    assert usage_of({"usage": openai}) == Usage(2006, 300, 1920, 256)
    responses = {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 87,
                 "output_tokens_details": {"reasoning_tokens": 64}, "total_tokens": 123}  # fmt: skip
    assert usage_of({"usage": responses}) == Usage(36, 87, 0, 64)
    anthropic = {"input_tokens": 12, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 2000,
                 "output_tokens": 50}  # fmt: skip
    assert usage_of({"usage": anthropic}) == Usage(2112, 50, 2000, 0)
    gemini = {"promptTokenCount": 900, "candidatesTokenCount": 40, "cachedContentTokenCount": 800,
              "thoughtsTokenCount": 60, "totalTokenCount": 1000}  # fmt: skip
    assert usage_of({"usageMetadata": gemini}) == Usage(900, 100, 800, 60)
    null_details = {"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": None}
    assert usage_of({"usage": null_details}) == Usage(5, 1)
