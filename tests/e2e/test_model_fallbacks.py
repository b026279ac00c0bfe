"""Model fallbacks end to end: `models: [...]` per request and `[[models]] fallbacks` in the config.

gpt-4 is offered by `primary`; gpt-4o by `second`; claude by `third`. When every offer of a model
failed, the next model of the chain serves, within the same deadline; a 400 never moves on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import httpx
import openai
import pytest

from proxy.config import Config, config_from_mapping
from proxy.mock.testing import MockProvider
from tests.harness import ProxyServer

HI: Any = [{"role": "user", "content": "hi"}]
ADMIN = "admin-token-for-fallback-tests"


def build(urls: dict[str, str], fallbacks: list[str] | None = None, **proxy: Any) -> Config:
    providers = [{"slug": s, "name": s.title(), "base_url": u, "listing": "none"} for s, u in urls.items()]
    models: list[dict[str, Any]] = [
        {"model_id": "gpt-4", "offers": [{"provider": "primary", "provider_model_id": "openai/gpt-4"}]},
        {"model_id": "gpt-4o", "offers": [{"provider": "second", "provider_model_id": "openai/gpt-4o"}]},
        {"model_id": "claude", "offers": [{"provider": "third", "provider_model_id": "anthropic/claude"}]},
    ]
    if fallbacks is not None:
        models[0]["fallbacks"] = fallbacks
    settings = {"deadline_s": 20, "first_byte_timeout_s": 5, **proxy}
    data = {"proxy": settings, "providers": providers, "models": models}
    return config_from_mapping(data, "(test)", {"FAILOVER_ADMIN_TOKEN": ADMIN})


@pytest.fixture
def three(mock_provider: Callable[..., MockProvider]) -> tuple[MockProvider, MockProvider, MockProvider]:
    return mock_provider("primary"), mock_provider("second"), mock_provider("third")


def urls(*mocks: MockProvider) -> dict[str, str]:
    return {m.name: m.url for m in mocks}


class Answer(NamedTuple):
    headers: Any
    parsed: Any  # the completion, or a stream's chunks (read whole)


def chat(proxy: ProxyServer, **kw: Any) -> Answer:
    """One request with the openai SDK, read whole; the client (and its connection) closed after."""
    with openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0) as sdk:
        raw = sdk.chat.completions.with_raw_response.create(model="gpt-4", messages=HI, **kw)
        parsed = raw.parse()
        return Answer(raw.headers, list(parsed) if kw.get("stream") else parsed)


FALLBACK = {"from_model": "gpt-4", "to_model": "gpt-4o"}


@pytest.mark.parametrize("stream", [False, True])
def test_models_field_serves_from_the_next_model_when_every_offer_of_the_first_failed(
    three: Any, proxy_server: Any, stream: bool
) -> None:
    primary, second, third = three
    primary.set_faults(fault="status", status=503)
    proxy = proxy_server(build(urls(*three)))
    raw = chat(proxy, stream=stream, extra_body={"models": ["gpt-4o", "claude"]})
    if stream:
        text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parsed if chunk.choices)
    else:
        text = raw.parsed.choices[0].message.content
    assert text
    assert raw.headers["x-gatewayz-model"] == "gpt-4o"
    assert raw.headers["x-gatewayz-provider"] == "second"
    assert raw.headers["x-gatewayz-provider-model"] == "openai/gpt-4o"
    assert raw.headers["x-gatewayz-attempts"] == "2"
    sent = second.stats()["recent"][-1]["body"]
    assert sent["model"] == "openai/gpt-4o"
    assert "models" not in sent  # removed before forwarding
    assert "models" not in primary.stats()["recent"][-1]["body"]
    assert third.stats()["requests"] == 0
    assert proxy.metric("gatewayz_model_fallbacks_total", **FALLBACK) == 1.0


def test_a_healthy_first_model_serves_and_the_header_names_it(three: Any, proxy_server: Any) -> None:
    primary, second, _ = three
    proxy = proxy_server(build(urls(*three), fallbacks=["gpt-4o"]))
    raw = chat(proxy, extra_body={"models": ["claude"]})
    assert raw.headers["x-gatewayz-model"] == "gpt-4"
    assert raw.headers["x-gatewayz-attempts"] == "1"
    assert second.stats()["requests"] == 0
    assert proxy.metric("gatewayz_model_fallbacks_total", **FALLBACK) == 0.0


@pytest.mark.parametrize("stream", [False, True])
def test_config_fallbacks_serve_from_the_next_model(three: Any, proxy_server: Any, stream: bool) -> None:
    primary, second, third = three
    primary.set_faults(fault="down")
    proxy = proxy_server(build(urls(*three), fallbacks=["gpt-4o", "claude"]))
    raw = chat(proxy, stream=stream)
    if stream:
        assert any(chunk.choices and chunk.choices[0].delta.content for chunk in raw.parsed)
    assert raw.headers["x-gatewayz-model"] == "gpt-4o"
    assert third.stats()["requests"] == 0


def test_the_requests_models_come_before_the_configured_fallbacks(three: Any, proxy_server: Any) -> None:
    primary, second, third = three
    primary.set_faults(fault="status", status=500)
    proxy = proxy_server(build(urls(*three), fallbacks=["gpt-4o"]))
    raw = chat(proxy, extra_body={"models": ["claude"]})
    assert raw.headers["x-gatewayz-model"] == "claude"
    assert second.stats()["requests"] == 0


def test_a_400_never_moves_to_another_model(three: Any, proxy_server: Any) -> None:
    primary, second, _ = three
    primary.set_faults(fault="status", status=400)
    proxy = proxy_server(build(urls(*three), fallbacks=["gpt-4o"]))
    with pytest.raises(openai.BadRequestError) as caught:
        chat(proxy, extra_body={"models": ["claude"]})
    assert caught.value.response.headers["x-gatewayz-model"] == "gpt-4"
    assert second.stats()["requests"] == 0
    assert proxy.metric("gatewayz_model_fallbacks_total", **FALLBACK) == 0.0


def test_when_every_model_failed_each_attempt_names_its_model(three: Any, proxy_server: Any) -> None:
    primary, second, third = three
    for mock in three:
        mock.set_faults(fault="status", status=503)
    proxy = proxy_server(build(urls(*three), fallbacks=["gpt-4o", "claude"]))
    with pytest.raises(openai.InternalServerError) as caught:
        chat(proxy)
    assert caught.value.status_code == 503
    body: Any = caught.value.body
    assert body["code"] == "all_providers_failed"
    assert [(a["model"], a["provider"], a["status"]) for a in body["attempts"]] == [
        ("gpt-4", "primary", "503"),
        ("gpt-4o", "second", "503"),
        ("claude", "third", "503"),
    ]
    assert proxy.metric("gatewayz_model_fallbacks_total", from_model="gpt-4o", to_model="claude") == 1.0


def test_a_model_no_offer_can_take_falls_back_to_one_that_can(
    mock_provider: Callable[..., MockProvider], proxy_server: Any
) -> None:
    primary, second = mock_provider("primary"), mock_provider("second")
    providers = [{"slug": m.name, "name": m.name, "base_url": m.url, "listing": "none"} for m in (primary, second)]
    models = [
        {"model_id": "gpt-4", "fallbacks": ["gpt-4o"],
         "offers": [{"provider": "primary", "provider_model_id": "gpt-4", "max_completion_tokens": 4096}]},
        {"model_id": "gpt-4o", "offers": [{"provider": "second", "provider_model_id": "gpt-4o", "max_completion_tokens": 16384}]},
    ]
    proxy = proxy_server(config_from_mapping({"providers": providers, "models": models}, "(test)", {}))
    raw = chat(proxy, max_tokens=10000)
    assert raw.headers["x-gatewayz-model"] == "gpt-4o"
    assert raw.headers["x-gatewayz-attempts"] == "1"
    assert primary.stats()["requests"] == 0
    with pytest.raises(openai.BadRequestError) as caught:
        chat(proxy, max_tokens=20000)  # no model of the chain can: the first model's refusal
    assert "gpt-4's offers is 4096" in caught.value.body["message"]  # type: ignore[index]


def test_unknown_models_in_the_chain_are_skipped_and_a_chain_with_none_known_is_404(
    three: Any, proxy_server: Any
) -> None:
    primary, *_ = three
    primary.set_faults(fault="status", status=503)
    proxy = proxy_server(build(urls(*three)))
    raw = chat(proxy, extra_body={"models": ["no-such-model", "openai/gpt-4o"]})  # provider-style ids map too
    assert raw.headers["x-gatewayz-model"] == "gpt-4o"
    sdk = openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="nope", messages=HI, extra_body={"models": ["also-nope"]})


def test_admin_and_metrics_show_the_chain(three: Any, proxy_server: Any) -> None:
    proxy = proxy_server(build(urls(*three), fallbacks=["gpt-4o", "claude"]))
    headers = {"authorization": f"Bearer {ADMIN}"}
    view = httpx.get(f"{proxy.base}/admin/failover/model/gpt-4", headers=headers).json()
    assert view["model_chain"] == ["gpt-4", "gpt-4o", "claude"]
    status = httpx.get(f"{proxy.base}/admin/failover/status", headers=headers).json()
    by_model = {m["model"]: m for m in status["models"]}
    assert by_model["gpt-4"]["model_fallbacks"] == ["gpt-4o", "claude"]
    assert by_model["claude"]["model_fallbacks"] == []


def test_without_fallbacks_a_503s_attempts_name_the_model(three: Any, proxy_server: Any) -> None:
    primary, second, _ = three
    primary.set_faults(fault="status", status=502)
    proxy = proxy_server(build(urls(*three)))
    sdk = openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model="openai/gpt-4", messages=HI)  # a provider-style id: the canonical model
    body: Any = caught.value.body
    assert [(a["model"], a["provider"], a["status"]) for a in body["attempts"]] == [("gpt-4", "primary", "502")]
    assert second.stats()["requests"] == 0
