"""What an offer serves, as the config, the listings and the catalog read it: the `endpoints` of a
provider and of an offer."""

from __future__ import annotations

from dataclasses import replace

import pytest

from health.probe import probe_kind
from proxy.commands.listing import parse_openai_listing, parse_openrouter_listing
from proxy.config import StaticOffer, config_from_mapping
from proxy.errors import ConfigError
from proxy.runtime.catalog import Catalog
from proxy.types import ALL_ENDPOINTS, Offer
from tests.harness import gateway_config

PROVIDER = {"slug": "a", "name": "A", "base_url": "http://127.0.0.1:1/v1", "listing": "none"}


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
