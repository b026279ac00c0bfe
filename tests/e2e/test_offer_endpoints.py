"""What an offer serves, over real sockets: requests sent only to offers that serve their endpoint,
and probes through an endpoint the offer serves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import openai
import pytest

from health.worker import HealthWorker
from proxy.store.offers import load_offers
from proxy.types import ALL_ENDPOINTS
from tests.catalog_helpers import migrated_pool
from tests.harness import gateway_config
from tests.health_helpers import health_config, offer_health, sync


def narrowed(config: Any, slug: str, endpoints: tuple[str, ...]) -> Any:
    """`config` with every static offer of provider `slug` narrowed to `endpoints`."""
    models = tuple(
        replace(m, offers=tuple(replace(o, endpoints=endpoints) if o.provider == slug else o for o in m.offers))
        for m in config.models
    )
    return replace(config, models=models)


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
