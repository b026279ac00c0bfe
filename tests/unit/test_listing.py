"""Listings: both formats parsed, malformed ones refused with a clear message, fetched over real HTTP."""

from __future__ import annotations

from decimal import Decimal

import pytest

from proxy.commands.listing import (
    ListedModel,
    fetch_listing,
    parse_listing,
    parse_openai_listing,
    parse_openrouter_listing,
)
from proxy.config import ProviderConfig, Secret
from proxy.errors import ListingError
from tests.catalog_helpers import listing_server, openai_listing, openrouter_listing


def test_openai_format() -> None:
    assert parse_openai_listing(openai_listing("gpt-4", "gpt-3.5-turbo")) == [
        ListedModel("gpt-4"),
        ListedModel("gpt-3.5-turbo"),
    ]


def test_openai_format_accepts_a_bare_list() -> None:
    assert parse_openai_listing([{"id": "gpt-4"}]) == [ListedModel("gpt-4")]


def test_openrouter_format_has_prices_per_token_and_context_length() -> None:
    payload = openrouter_listing(("openai/gpt-4", "0.00003", "0.00006", 8191))
    assert parse_openrouter_listing(payload) == [
        ListedModel("openai/gpt-4", Decimal("0.00003"), Decimal("0.00006"), Decimal("0"), 8191)
    ]


def test_an_impossible_context_length_is_unknown() -> None:
    assert parse_openrouter_listing({"data": [{"id": "x", "context_length": 10**12}]}) == [ListedModel("x")]


def test_openrouter_negative_price_means_unknown_and_missing_pricing_is_fine() -> None:
    payload = {
        "data": [{"id": "openrouter/auto", "pricing": {"prompt": "-1", "completion": "-1"}}, {"id": "x"}]
    }
    assert parse_openrouter_listing(payload) == [ListedModel("openrouter/auto"), ListedModel("x")]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"models": []}, 'expected an object with a "data" list'),
        ("nope", 'expected an object with a "data" list'),
        ({"data": [{"id": "a"}, "b"]}, r"data\[1\]: expected an object, got str"),
        ({"data": [{"name": "no id"}]}, r"data\[0\].id: expected a non-empty string"),
        ({"data": [{"id": "  "}]}, r"data\[0\].id: expected a non-empty string"),
    ],
)
def test_malformed_listings_name_what_is_wrong(payload: object, message: str) -> None:
    with pytest.raises(ListingError, match=message):
        parse_listing("openai", payload, "Test listing")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"id": "a", "pricing": {"prompt": "cheap"}}, r"data\[0\].pricing.prompt: not a price: 'cheap'"),
        ({"id": "a", "pricing": {"prompt": "NaN"}}, r"pricing.prompt: not a price"),
        ({"id": "a", "pricing": {"completion": [1]}}, r"pricing.completion: expected a price"),
        ({"id": "a", "pricing": "free"}, r"data\[0\].pricing: expected an object"),
        ({"id": "a", "context_length": "big"}, r"data\[0\].context_length: expected an integer"),
    ],
)
def test_malformed_openrouter_entries_name_the_field(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ListingError, match=message):
        parse_openrouter_listing({"data": [entry]})


def provider(base_url: str, listing: str = "openai", key: str = "") -> ProviderConfig:
    return ProviderConfig(
        slug="p", name="Prov", base_url=base_url, api_key_env="PROV_KEY", listing=listing, api_key=Secret(key)
    )


async def test_fetch_sends_the_key_as_bearer_to_that_provider() -> None:
    async with listing_server() as server:
        base = server.add("p", openrouter_listing(("openai/gpt-4", "0.00003", "0.00006", 8191)))
        models = await fetch_listing(provider(base, "openrouter", key="sk-secret"))
    assert [m.provider_model_id for m in models] == ["openai/gpt-4"]
    assert server.listings["p"].authorization == ["Bearer sk-secret"]


async def test_fetch_without_a_key_sends_no_authorization() -> None:
    async with listing_server() as server:
        base = server.add("p", openai_listing("gpt-4"))
        await fetch_listing(provider(base))
    assert server.listings["p"].authorization == [None]


async def test_fetch_reports_an_error_status_without_the_key() -> None:
    async with listing_server() as server:
        base = server.add("p", {"error": "no"}, status=401)
        with pytest.raises(
            ListingError, match="answered HTTP 401 \\(is PROV_KEY set to a valid key\\?\\)"
        ) as info:
            await fetch_listing(provider(base, key="sk-secret"))
    assert "sk-secret" not in str(info.value)


async def test_fetch_reports_malformed_json() -> None:
    async with listing_server() as server:
        base = server.add("p", body=b"<html>oops")
        with pytest.raises(ListingError, match="not valid JSON"):
            await fetch_listing(provider(base))


async def test_fetch_reports_a_provider_that_is_down() -> None:
    async with listing_server() as server:
        base = server.url
    with pytest.raises(ListingError, match="cannot fetch"):
        await fetch_listing(provider(f"{base}/p"), timeout_s=5)


async def test_fetch_does_not_follow_redirects() -> None:
    async with listing_server() as server:
        base = server.add("p", body=b"", status=302)
        with pytest.raises(ListingError, match="answered HTTP 302"):
            await fetch_listing(provider(base, key="sk-secret"))


# --- capabilities and other providers' shapes (issue 12) ---------------------------------------------

# An entry as OpenRouter's GET /api/v1/models publishes it (fields as in its API reference).
OPENROUTER_GPT4O = {
    "id": "openai/gpt-4o",
    "canonical_slug": "openai/gpt-4o",
    "hugging_face_id": None,
    "name": "OpenAI: GPT-4o",
    "created": 1715367049,
    "description": "GPT-4o is OpenAI's latest flagship model.",
    "context_length": 128000,
    "architecture": {
        "modality": "text+image->text",
        "input_modalities": ["text", "image", "file"],
        "output_modalities": ["text"],
        "tokenizer": "GPT",
        "instruct_type": None,
    },
    "pricing": {"prompt": "0.0000025", "completion": "0.00001", "request": "0", "image": "0.003613",
                "web_search": "0", "internal_reasoning": "0", "input_cache_read": "0.00000125"},
    "top_provider": {"context_length": 128000, "max_completion_tokens": 16384, "is_moderated": True},
    "per_request_limits": None,
    "supported_parameters": ["frequency_penalty", "logit_bias", "logprobs", "max_tokens", "presence_penalty",
                             "response_format", "seed", "stop", "structured_outputs", "temperature", "tool_choice",
                             "tools", "top_logprobs", "top_p"],
}

# Together's GET /v1/models: a bare array; pricing in USD per million tokens.
TOGETHER = [
    {
        "id": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "object": "model",
        "created": 1733461315,
        "type": "chat",
        "running": False,
        "display_name": "Meta Llama 3.3 70B Instruct Turbo",
        "organization": "Meta",
        "link": "https://huggingface.co/meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "license": "Llama-3.3",
        "context_length": 131072,
        "config": {"chat_template": "{{ messages }}", "stop": ["<|eot_id|>"], "bos_token": "<|begin_of_text|>",
                   "eos_token": "<|eot_id|>"},
        "pricing": {"hourly": 0, "input": 0.88, "output": 0.88, "base": 0, "finetune": 0},
    },
    {
        "id": "BAAI/bge-large-en-v1.5",
        "object": "model",
        "created": 0,
        "type": "embedding",
        "display_name": "BAAI-Bge-Large-1p5",
        "organization": "BAAI",
        "context_length": 512,
        "pricing": {"hourly": 0, "input": 0.02, "output": 0, "base": 0, "finetune": 0},
    },
]

# Groq's GET /openai/v1/models: the OpenAI shape plus `context_window` and `max_completion_tokens`.
GROQ = {
    "object": "list",
    "data": [
        {"id": "llama-3.3-70b-versatile", "object": "model", "created": 1733447754, "owned_by": "Meta",
         "active": True, "context_window": 131072, "public_apps": None, "max_completion_tokens": 32768},
        {"id": "gemma2-9b-it", "object": "model", "created": 1693721698, "owned_by": "Google",
         "active": True, "context_window": 8192, "public_apps": None},
    ],
}


def test_openrouter_capabilities_top_provider_and_modalities() -> None:
    [entry] = parse_openrouter_listing({"data": [OPENROUTER_GPT4O]})
    assert entry.context_length == 128000
    assert entry.max_completion_tokens == 16384
    assert entry.input_modalities == ("file", "image", "text")
    assert entry.supported_parameters is not None
    assert {"tools", "tool_choice", "structured_outputs", "response_format", "seed"} <= set(entry.supported_parameters)
    assert entry.pricing_prompt == Decimal("0.0000025")


def test_openrouter_cached_prompt_price_is_input_cache_read_per_token() -> None:
    [entry] = parse_openrouter_listing({"data": [OPENROUTER_GPT4O]})
    assert entry.pricing_cached_prompt == Decimal("0.00000125")
    [scaled] = parse_listing("openrouter", {"data": [OPENROUTER_GPT4O]}, pricing_unit="1m")
    assert scaled.pricing_cached_prompt == Decimal("0.00000000000125")
    [unlisted] = parse_openrouter_listing({"data": [{"id": "x", "pricing": {"prompt": "0.000001"}}]})
    assert unlisted.pricing_cached_prompt is None  # no cached price: a cached token costs the prompt price


def test_openrouter_top_provider_context_wins_and_absent_fields_stay_unknown() -> None:
    narrower = {**OPENROUTER_GPT4O, "top_provider": {"context_length": 64000, "is_moderated": False}}
    del narrower["supported_parameters"]
    narrower["architecture"] = {"modality": "text->text", "tokenizer": "GPT"}
    [entry] = parse_openrouter_listing({"data": [narrower]})
    assert entry.context_length == 64000
    assert (entry.max_completion_tokens, entry.supported_parameters, entry.input_modalities) == (None, None, None)


def test_together_bare_array_prices_per_million_become_per_token() -> None:
    chat, embedding = parse_listing("together", TOGETHER)
    assert chat.provider_model_id == "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    assert chat.pricing_prompt == chat.pricing_completion == Decimal("0.00000088")
    assert chat.context_length == 131072
    assert chat.supported_parameters is None  # Together's listing does not say: unknown
    assert embedding.pricing_prompt == Decimal("0.00000002")


def test_groq_listing_fields_are_read_in_the_openai_format() -> None:
    versatile, gemma = parse_listing("openai", GROQ)
    assert (versatile.context_length, versatile.max_completion_tokens) == (131072, 32768)
    assert (gemma.context_length, gemma.max_completion_tokens) == (8192, None)
    assert versatile.pricing_prompt is None


@pytest.mark.parametrize(("unit", "price"), [("token", "0.0000025"), ("1k", "0.0000000025"), ("1m", "0.0000000000025")])
def test_pricing_unit_scales_an_openrouter_style_pricing_object(unit: str, price: str) -> None:
    [entry] = parse_listing("openrouter", {"data": [OPENROUTER_GPT4O]}, pricing_unit=unit)
    assert entry.pricing_prompt == Decimal(price)
    assert entry.pricing_request == Decimal(0)  # per request, whatever the unit of the token prices


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"supported_parameters": "tools"}, "data[0].supported_parameters: expected a list of strings"),
        ({"top_provider": []}, "data[0].top_provider: expected an object"),
        ({"architecture": {"input_modalities": [1]}}, "data[0].architecture.input_modalities: expected a list"),
    ],
)
def test_malformed_capabilities_name_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(ListingError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_openrouter_listing({"data": [{**OPENROUTER_GPT4O, **change}]})


def test_odd_extra_fields_of_an_openai_listing_are_unknown_not_errors() -> None:
    [entry] = parse_openai_listing({"data": [{"id": "m", "context_window": "128k", "max_completion_tokens": -1}]})
    assert (entry.provider_model_id, entry.context_length, entry.max_completion_tokens) == ("m", None, None)
