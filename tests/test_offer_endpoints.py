"""What an offer serves: the `endpoints` of a provider and of an offer (config, listings, database),
requests sent only to offers that serve their endpoint, and probes through an endpoint the offer serves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import openai
import pytest

from health.probe import probe_kind
from health.worker import HealthWorker
from proxy.catalog.listing import parse_openai_listing, parse_openrouter_listing
from proxy.config import StaticOffer, config_from_mapping
from proxy.errors import ConfigError
from proxy.runtime.catalog import Catalog
from proxy.store.offers import load_offers
from proxy.types import ALL_ENDPOINTS, Offer
from tests.catalog_helpers import migrated_pool
from tests.harness import gateway_config
from tests.health_helpers import health_config, offer_health, sync

PROVIDER = {"slug": "a", "name": "A", "base_url": "http://127.0.0.1:1/v1", "listing": "none"}


def narrowed(config: Any, slug: str, endpoints: tuple[str, ...]) -> Any:
    """`config` with every static offer of provider `slug` narrowed to `endpoints`."""
    models = tuple(
        replace(m, offers=tuple(replace(o, endpoints=endpoints) if o.provider == slug else o for o in m.offers))
        for m in config.models
    )
    return replace(config, models=models)


def test_endpoints_in_the_config_and_their_errors() -> None:
    data = {
        "providers": [{**PROVIDER, "endpoints": ["chat", "embeddings"]}],
        "models": [
            {"model_id": "e", "offers": [{"provider": "a", "provider_model_id": "e", "endpoints": ["embeddings"]}]}
        ],
    }
    config = config_from_mapping(data, "f.toml", {})
    assert config.providers[0].endpoints == ("chat", "embeddings")
    assert config.models[0].offers[0] == StaticOffer("a", "e", endpoints=("embeddings",))
    with pytest.raises(ConfigError, match=r"f.toml: providers\[0\].endpoints: expected a non-empty list of chat"):
        config_from_mapping({"providers": [{**PROVIDER, "endpoints": ["chat", "video"]}]}, "f.toml", {})


def test_listings_say_what_their_models_serve() -> None:
    together = parse_openai_listing(
        [{"id": "m-chat", "type": "chat"}, {"id": "m-embed", "type": "embedding"}, {"id": "m-plain"}]
    )
    assert [m.endpoints for m in together] == [("chat", "completions", "responses"), ("embeddings",), None]
    openrouter = parse_openrouter_listing(
        {"data": [
            {"id": "x/img", "architecture": {"input_modalities": ["text"], "output_modalities": ["image", "text"]}},
            {"id": "x/old", "architecture": {"modality": "text+image->text"}},
            {"id": "x/none"},
        ]}
    )  # fmt: skip
    assert [m.endpoints for m in openrouter] == [("images", "chat", "completions", "responses"),
                                                 ("chat", "completions", "responses"), None]  # fmt: skip


def test_a_probe_goes_through_an_endpoint_the_offer_serves() -> None:
    assert probe_kind("chat", ALL_ENDPOINTS) == "chat"
    assert probe_kind("chat", frozenset({"embeddings"})) == "embeddings"
    assert probe_kind("chat", frozenset({"moderations"})) == "moderations"
    assert probe_kind("chat", frozenset({"images", "audio"})) == "listing"
    assert probe_kind("listing", frozenset({"embeddings"})) == "listing"


def test_the_catalog_narrows_the_database_offers_by_their_provider_on_every_replace() -> None:
    config = gateway_config([("a", "http://127.0.0.1:1/v1"), ("b", "http://127.0.0.1:2/v1")], {"gpt-4": ["a", "b"]})
    catalog = Catalog(config)
    assert [o.provider_slug for o in catalog.lookup("gpt-4", "embeddings") or ()] == ["a", "b"]
    from_database = [
        Offer("gpt-4", "a", "a/text-embed", "http://elsewhere/v1", "X", endpoints=frozenset({"embeddings"})),
        Offer("gpt-4", "b", "b/gpt-4", "http://elsewhere/v1", "X"),
    ]
    catalog.replace({"gpt-4": from_database}, source="database")

    def serving(model: str, endpoint: str) -> list[str]:
        return [o.provider_slug for o in catalog.lookup(model, endpoint) or ()]

    # the config's pinned a/gpt-4 (the database lacks it) routes beside the database's offers
    assert serving("gpt-4", "chat") == ["b", "a"] and serving("gpt-4", "embeddings") == ["a", "b", "a"]
    assert serving("a/text-embed", "embeddings") == ["a", "b", "a"] and catalog.resolve("a/text-embed") == "gpt-4"
    assert {o.base_url for o in catalog.lookup("gpt-4") or ()} == {"http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"}
    # a reloaded config narrows provider b: the table is rebuilt over the same database snapshot
    providers = tuple(replace(p, endpoints=("chat",)) if p.slug == "b" else p for p in config.providers)
    catalog.reconfigure(replace(config, providers=providers))
    assert catalog.source == "database"
    assert serving("gpt-4", "chat") == ["b", "a"] and serving("gpt-4", "embeddings") == ["a", "a"]
    assert serving("gpt-4", "images") == ["a"] and catalog.lookup("nope", "chat") is None  # the pinned one only


def test_requests_go_only_to_offers_that_serve_their_endpoint(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    embedder, general = mock_provider("embedder"), mock_provider("general")
    config = gateway_config(
        [("embedder", embedder.url), ("general", general.url)],
        {"mixed": ["embedder", "general"], "embed-only": ["embedder"]},
    )
    proxy = proxy_server(narrowed(config, "embedder", ("embeddings",)))
    sdk = openai.OpenAI(base_url=proxy.url, api_key="u", default_headers={"x-gatewayz-provider": "embedder"})
    with sdk:
        chat = sdk.chat.completions.with_raw_response.create(
            model="mixed", messages=[{"role": "user", "content": "hi"}]
        )
        assert chat.headers["x-gatewayz-provider"] == "general" and chat.headers["x-gatewayz-attempts"] == "1"
        embedded = sdk.embeddings.with_raw_response.create(model="mixed", input="hi")
        assert embedded.headers["x-gatewayz-provider"] == "embedder"
        with pytest.raises(openai.NotFoundError, match="is not served on /v1/chat/completions"):
            sdk.chat.completions.create(model="embed-only", messages=[{"role": "user", "content": "hi"}])
        assert sdk.models.retrieve("embed-only").id == "embed-only"
    assert "/v1/chat/completions" not in embedder.stats()["paths"]


def test_a_model_fallback_moves_only_to_a_model_serving_the_endpoint(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    embedder, general = mock_provider("embedder"), mock_provider("general")
    config = gateway_config(
        [("embedder", embedder.url), ("general", general.url)],
        {"embed-only": ["embedder"], "other-embed": ["embedder"], "mixed": ["general"]},
    )
    proxy = proxy_server(narrowed(config, "embedder", ("embeddings",)))
    messages = [{"role": "user", "content": "hi"}]
    with openai.OpenAI(base_url=proxy.url, api_key="u") as sdk:
        chat = sdk.chat.completions.with_raw_response.create(
            model="embed-only", messages=messages, extra_body={"models": ["other-embed", "mixed"]}  # type: ignore[arg-type]
        )
        assert (chat.headers["x-gatewayz-model"], chat.headers["x-gatewayz-provider"]) == ("mixed", "general")
        with pytest.raises(openai.NotFoundError, match="is not served on /v1/chat/completions"):
            sdk.chat.completions.create(model="embed-only", messages=messages, extra_body={"models": ["other-embed"]})  # type: ignore[arg-type]
    assert "/v1/chat/completions" not in embedder.stats()["paths"]


async def test_an_embedding_offer_is_probed_with_an_embedding_and_stays_healthy(
    fresh_database_url: str, mock_provider: Callable[..., Any]
) -> None:
    # like a real provider, this one refuses a chat completion for its embedding model
    a = mock_provider("a", fault="status", status=400, paths=("/v1/chat/completions",))
    b = mock_provider("b")
    config = narrowed(health_config([("a", a.url), ("b", b.url)]), "a", ("embeddings",))
    await sync(fresh_database_url, config)
    async with migrated_pool(fresh_database_url) as pool:
        loaded = await load_offers(pool)
    assert {o.provider_slug: o.endpoints for o in loaded["gpt-4"]} == {"a": {"embeddings"}, "b": ALL_ENDPOINTS}
    async with HealthWorker(config, fresh_database_url) as worker:
        for _ in range(3):
            await worker.run_once()
    assert await offer_health(fresh_database_url) == {"a": "healthy", "b": "healthy"}
    assert a.stats()["paths"] == {"/v1/embeddings": 3}
    assert b.stats()["paths"] == {"/v1/chat/completions": 3}
