"""Routing by what an offer can do, end to end: the official openai SDK -> the proxy -> mock providers.

Two catalogs: offers synced from mock providers whose OpenRouter-format listings publish
capabilities (`supported_parameters`, `top_provider`, `architecture.input_modalities`), and static
offers whose capabilities are set in the config.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from proxy.commands.sync import sync_catalog
from proxy.config import Config, config_from_mapping
from proxy.mock.testing import MockProvider
from tests.catalog_helpers import migrated_pool
from tests.harness import ProxyServer

KEYS = {"SMALL_API_KEY": "sk-test-small-aaaaaaaaaaaa", "BIG_API_KEY": "sk-test-big-bbbbbbbbbbbbbb"}
HI: Any = [{"role": "user", "content": "hi"}]
TOOLS: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def client(proxy: ProxyServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url, api_key="client-key", max_retries=0)


def chat(proxy: ProxyServer, **kw: Any) -> Any:
    kw.setdefault("messages", HI)
    return client(proxy).chat.completions.with_raw_response.create(model="gpt-4", **kw)


def served_by(raw: Any) -> str:
    return str(raw.headers["x-gatewayz-provider"])


def requests_to(mock: MockProvider) -> int:
    return int(mock.stats()["requests"])


# --- offers synced from listings that publish capabilities -------------------------------------------


@pytest.fixture
def listed(
    fresh_database_url: str, mock_provider: Callable[..., MockProvider], proxy_server: Callable[..., ProxyServer]
) -> Iterator[tuple[MockProvider, MockProvider, ProxyServer]]:
    """`small` (priority 0): 8k context, 4k completion, no tools, text only; `big` (priority 1): 128k
    context, 16k completion, tools, structured outputs, images. Both list `gpt-4` in OpenRouter's format."""
    small = mock_provider(
        "small", models=["gpt-4"], listing="openrouter", context_length=8192, max_completion_tokens=4096,
        supported_parameters=["max_tokens", "temperature", "top_p", "stop"], input_modalities=["text"],
    )
    big = mock_provider(
        "big", models=["gpt-4"], listing="openrouter", context_length=128000, max_completion_tokens=16384,
        supported_parameters=["max_tokens", "tools", "tool_choice", "response_format", "structured_outputs", "seed"],
        input_modalities=["text", "image"],
    )
    providers = [
        {"slug": "small", "name": "Small", "base_url": small.url, "api_key_env": "SMALL_API_KEY",
         "listing": "openrouter", "priority": 0, "probe": "none"},
        {"slug": "big", "name": "Big", "base_url": big.url, "api_key_env": "BIG_API_KEY",
         "listing": "openrouter", "priority": 1, "probe": "none"},
    ]
    env = {**KEYS, "DATABASE_URL": fresh_database_url}
    config = config_from_mapping({"proxy": {"deadline_s": 20}, "providers": providers}, "(test)", env)

    async def sync() -> None:
        async with migrated_pool(fresh_database_url) as pool:
            reports = await sync_catalog(pool, config)
        assert not any(r.error for r in reports), [r.error for r in reports]

    asyncio.run(sync())
    proxy = proxy_server(config)
    assert proxy.gateway.catalog.source != "config"  # the offers came from the database
    small.reset_stats()
    big.reset_stats()
    yield small, big, proxy


def test_a_plain_request_goes_to_the_preferred_offer(listed: Any) -> None:
    small, big, proxy = listed
    assert served_by(chat(proxy, max_tokens=100)) == "small"
    assert requests_to(big) == 0


def test_a_tools_request_skips_the_offer_without_tool_support(listed: Any) -> None:
    small, big, proxy = listed
    raw = chat(proxy, tools=TOOLS, tool_choice="auto")
    assert served_by(raw) == "big"
    assert raw.headers["x-gatewayz-attempts"] == "1"
    assert requests_to(small) == 0


def test_max_tokens_above_an_offers_limit_skips_it(listed: Any) -> None:
    small, big, proxy = listed
    assert served_by(chat(proxy, max_tokens=9000)) == "big"
    assert served_by(chat(proxy, max_completion_tokens=9000)) == "big"
    assert requests_to(small) == 0


def test_a_prompt_too_large_for_the_small_context_goes_to_the_large_one(listed: Any) -> None:
    small, big, proxy = listed
    long_prompt = [{"role": "user", "content": "lorem ipsum dolor sit amet " * 1500}]  # 40,500 chars: ~10,000 tokens
    assert served_by(chat(proxy, messages=long_prompt)) == "big"
    assert requests_to(small) == 0


def test_an_image_goes_only_to_an_offer_that_takes_images(listed: Any) -> None:
    small, big, proxy = listed
    image = [{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]}]
    assert served_by(chat(proxy, messages=image)) == "big"
    assert requests_to(small) == 0


def test_require_parameters_keeps_only_offers_known_to_honour_every_parameter(listed: Any) -> None:
    small, big, proxy = listed
    raw = chat(proxy, temperature=0.2, extra_body={"provider": {"require_parameters": True}})
    assert served_by(raw) == "small"
    raw = chat(proxy, seed=7, extra_body={"provider": {"require_parameters": True}})
    assert served_by(raw) == "big"
    sent = big.stats()["recent"][-1]["body"]
    assert "provider" not in sent and sent["seed"] == 7
    with pytest.raises(openai.BadRequestError) as caught:
        chat(proxy, seed=7, temperature=0.2, extra_body={"provider": {"require_parameters": True}})
    error = caught.value.body
    assert error["code"] == "no_offer_fits"  # type: ignore[index]
    assert "(seed, temperature)" in error["message"]  # type: ignore[index]


def test_with_no_fitting_offer_the_error_names_what_was_missing(listed: Any) -> None:
    small, big, proxy = listed
    with pytest.raises(openai.BadRequestError) as caught:
        chat(proxy, max_tokens=20000)
    error: Any = caught.value.body
    assert error["message"] == "max_tokens 20000 is above every offer's limit (the largest among gpt-4's offers is 16384)"
    assert error["param"] == "max_tokens"
    huge = [{"role": "user", "content": "x" * 600_000}]
    with pytest.raises(openai.BadRequestError) as caught:
        chat(proxy, messages=huge)
    error = caught.value.body
    assert error["message"] == "the prompt is about 150000 tokens; the largest context among gpt-4's offers is 128000"
    assert requests_to(small) == requests_to(big) == 0


def test_the_admin_view_shows_what_each_offer_can_do(listed: Any, mock_provider: Any) -> None:
    small, big, proxy = listed
    offers = {o.provider_slug: o for o in proxy.gateway.catalog.lookup("gpt-4")}
    assert offers["small"].context_length == 8192
    assert offers["small"].max_completion_tokens == 4096
    assert offers["big"].supported_parameters >= {"tools", "structured_outputs"}
    assert offers["big"].input_modalities == {"text", "image"}


# --- static offers with capabilities in the config ---------------------------------------------------


def static_config(urls: dict[str, str], models: list[dict[str, Any]], **provider_keys: dict[str, Any]) -> Config:
    providers = [
        {"slug": slug, "name": slug.title(), "base_url": url, "listing": "none", "priority": i, **provider_keys.get(slug, {})}
        for i, (slug, url) in enumerate(urls.items())
    ]
    return config_from_mapping({"proxy": {"deadline_s": 20}, "providers": providers, "models": models}, "(test)", {})


def test_static_offers_route_by_config_capabilities_known_fit_first(
    mock_provider: Callable[..., MockProvider], proxy_server: Callable[..., ProxyServer]
) -> None:
    vague, tooled, plain = mock_provider("vague"), mock_provider("tooled"), mock_provider("plain")
    offers = [
        {"provider": "vague", "provider_model_id": "gpt-4"},  # says nothing: unknown
        {"provider": "tooled", "provider_model_id": "gpt-4", "supported_parameters": ["tools", "tool_choice"],
         "context_length": 32000, "max_completion_tokens": 8000},
        {"provider": "plain", "provider_model_id": "gpt-4", "supported_parameters": ["temperature"]},
    ]
    urls = {"vague": vague.url, "tooled": tooled.url, "plain": plain.url}
    proxy = proxy_server(static_config(urls, [{"model_id": "gpt-4", "offers": offers}]))
    assert served_by(chat(proxy)) == "vague"  # a plain request: priority decides, as before
    assert served_by(chat(proxy, tools=TOOLS)) == "tooled"  # known to fit before unknown, despite priority
    assert requests_to(plain) == 0
    tooled.set_faults(fault="status", status=503)
    raw = chat(proxy, tools=TOOLS)
    assert served_by(raw) == "vague"  # unknown is tried after known, never the one known unable
    assert raw.headers["x-gatewayz-attempts"] == "2"
    assert requests_to(plain) == 0


def test_max_price_and_data_policies_filter_static_offers(
    mock_provider: Callable[..., MockProvider], proxy_server: Callable[..., ProxyServer]
) -> None:
    dear, cheap = mock_provider("dear"), mock_provider("cheap")
    offers = [
        {"provider": "dear", "provider_model_id": "gpt-4", "pricing_prompt": 0.00003, "pricing_completion": 0.00006},
        {"provider": "cheap", "provider_model_id": "gpt-4", "pricing_prompt": 0.000001, "pricing_completion": 0.000002,
         "zdr": True},
    ]
    config = static_config(
        {"dear": dear.url, "cheap": cheap.url}, [{"model_id": "gpt-4", "offers": offers}],
        dear={"data_collection": "allow"}, cheap={"data_collection": "deny"},
    )
    proxy = proxy_server(config)
    assert served_by(chat(proxy)) == "dear"
    assert served_by(chat(proxy, extra_body={"provider": {"max_price": {"prompt": 5, "completion": 10}}})) == "cheap"
    assert served_by(chat(proxy, extra_body={"provider": {"data_collection": "deny"}})) == "cheap"
    assert served_by(chat(proxy, extra_body={"provider": {"zdr": True}})) == "cheap"
    with pytest.raises(openai.BadRequestError) as caught:
        chat(proxy, extra_body={"provider": {"max_price": {"prompt": 0.5}}})
    error: Any = caught.value.body
    assert error["message"].startswith("no offer of gpt-4 within max_price")
    assert error["param"] == "provider.max_price"
    assert requests_to(dear) == 1
