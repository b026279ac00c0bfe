"""Listings: both formats parsed, malformed ones refused with a clear message, fetched over real HTTP."""

from __future__ import annotations

from decimal import Decimal

import pytest

from proxy.catalog.listing import (
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
