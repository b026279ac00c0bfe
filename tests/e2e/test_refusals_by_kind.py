"""Refusals by kind, end to end over real sockets with the official openai SDK as the client: a
provider's recorded refusal (`tests/refusal_cases.py`, each with its source) fails over when it is
about this offer, is passed through byte for byte when it is the client's own mistake, and gets one
second opinion from another provider when its kind is unknown."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from proxy.mock.testing import MockProvider
from tests.harness import ProxyServer, gateway_config
from tests.refusal_cases import TUNING, Case
from tests.refusal_held_out import HELD_OUT
from tests.scripted_provider import Reply, ScriptedProvider, json_reply

MESSAGES: Any = [{"role": "user", "content": "hello"}]


def case(source: str) -> Case:
    return next(c for c in TUNING + HELD_OUT if c.source == source)


XAI_PRESENCE = case("https://github.com/yym68686/uni-api/issues/105")
COHERE_TOKENS = case("https://github.com/cohere-ai/sandbox-topically/issues/4")
GEMINI_UNKNOWN_NAME = case("https://github.com/MinLL/SkyrimNet-GamePlugin/issues/77")
GROQ_DECOMMISSIONED = case("https://github.com/angerman/llm-groq/issues/17")
OLLAMA_TOOLS = case("https://github.com/FoundationAgents/OpenManus/issues/220")
TOOL_WITHOUT_CALL = case("https://github.com/FoundationAgents/OpenManus/issues/744")
JSON_WORD = case("https://github.com/ultimatejimmy/xray.koplugin/issues/33")
VLLM_AUTO_TOOLS = case("https://github.com/vllm-project/vllm/issues/9986")
DEEPSEEK_PASS_BACK = case("https://github.com/JohnnyZ93/oai-compatible-copilot/issues/202")


@pytest.fixture
def scripted() -> Iterator[Any]:
    started: list[ScriptedProvider] = []

    def make(*replies: Reply) -> ScriptedProvider:
        provider = ScriptedProvider(*replies).start()
        started.append(provider)
        return provider

    yield make
    for provider in started:
        provider.stop()


def refusal(c: Case) -> Reply:
    return Reply(c.status, (c.raw,), content_type="application/json")


def serve(proxy_server: Any, *providers: tuple[str, str], proxy: dict[str, Any] | None = None) -> ProxyServer:
    return proxy_server(gateway_config(list(providers), proxy=proxy))


def sdk(proxy: ProxyServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0)


def metric(proxy: ProxyServer, name: str, **labels: str) -> float:
    for line in httpx.get(f"{proxy.base}/metrics").text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def extra_fields(c: Case) -> dict[str, Any]:
    """What the recorded request sent beside model and messages, as the SDK's extra body."""
    body = c.request_body()
    return {k: v for k, v in body.items() if k not in ("model", "messages")}


# --- an offer's own gap fails over, in any provider's words -----------------------------------------------------


@pytest.mark.parametrize(
    ("recorded", "reason"),
    [
        (XAI_PRESENCE, "unsupported"),  # xAI: "Argument not supported on this model: presencePenalty"
        (GEMINI_UNKNOWN_NAME, "unsupported"),  # Google: a JSON array of errors, 'Unknown name "top_k"'
        (GROQ_DECOMMISSIONED, "unsupported"),  # Groq: a retired model
        (OLLAMA_TOOLS, "unsupported"),  # Ollama: a feature this offer lacks
        (COHERE_TOKENS, "context_length"),  # Cohere: a token limit said without "context"
    ],
    ids=lambda v: v.id if isinstance(v, Case) else v,
)
def test_an_offer_specific_refusal_fails_over_whatever_its_wording(
    scripted: Any, mock_provider: Any, proxy_server: Any, recorded: Case, reason: str
) -> None:
    a = scripted(refusal(recorded))
    b: MockProvider = mock_provider("b")
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url))
    with sdk(proxy) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4", messages=MESSAGES, extra_body=extra_fields(recorded)
        )
    assert raw.parse().choices[0].message is not None
    assert (raw.headers["x-gatewayz-provider"], raw.headers["x-gatewayz-attempts"]) == ("b", "2")
    assert metric(proxy, "gatewayz_failovers_total", from_provider="a", reason=reason) == 1
    assert metric(proxy, "gatewayz_second_opinions_total") == 0
    assert proxy.gateway.state.offers.get(("a", "a/gpt-4")) is None  # an offer's gap is not its ill health


def test_a_refusal_that_every_offer_gives_reaches_the_client_as_the_first_one_said_it(
    scripted: Any, proxy_server: Any
) -> None:
    a = scripted(refusal(OLLAMA_TOOLS))
    b = scripted(json_reply({"error": {"message": "tools are not supported by this deployment"}}, status=400))
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url))
    response = httpx.post(
        f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES, **extra_fields(OLLAMA_TOOLS)}
    )
    assert response.status_code == 400 and response.content == OLLAMA_TOOLS.raw  # not a 503: the request was refused
    assert (response.headers["x-gatewayz-provider"], response.headers["x-gatewayz-attempts"]) == ("a", "2")


# --- a known client mistake is passed through at once -----------------------------------------------------------


@pytest.mark.parametrize("recorded", [TOOL_WITHOUT_CALL, JSON_WORD], ids=lambda c: c.id)
def test_a_known_client_mistake_is_passed_through_byte_for_byte_at_once(
    scripted: Any, mock_provider: Any, proxy_server: Any, recorded: Case
) -> None:
    a = scripted(refusal(recorded))
    b: MockProvider = mock_provider("b")
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url))
    with sdk(proxy) as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4", messages=MESSAGES, extra_body=extra_fields(recorded))
    assert caught.value.response.content == recorded.raw
    assert caught.value.response.headers["x-gatewayz-attempts"] == "1"
    assert b.stats()["requests"] == 0
    assert metric(proxy, "gatewayz_second_opinions_total") == 0
    assert metric(proxy, "gatewayz_requests_total", outcome="upstream_400") == 1


# --- a refusal of unknown kind: one second opinion ---------------------------------------------------------------


def test_an_unknown_refusal_is_asked_once_of_another_provider_which_serves(
    scripted: Any, mock_provider: Any, proxy_server: Any
) -> None:
    a = scripted(refusal(VLLM_AUTO_TOOLS))  # vLLM without --enable-auto-tool-choice: says nothing we know
    b: MockProvider = mock_provider("b")
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url))
    with sdk(proxy) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4", messages=MESSAGES, extra_body=extra_fields(VLLM_AUTO_TOOLS)
        )
    assert raw.parse().choices[0].message.tool_calls  # the mock's answer to a request with tools
    assert (raw.headers["x-gatewayz-provider"], raw.headers["x-gatewayz-attempts"]) == ("b", "2")
    assert metric(proxy, "gatewayz_second_opinions_total", model="gpt-4", outcome="served") == 1


@pytest.mark.parametrize(
    ("second", "outcome"),
    [
        (json_reply({"error": {"message": "reasoning_content is required in thinking mode"}}, status=400), "refused"),
        (json_reply({"error": {"message": "upstream overloaded"}}, status=503), "failed"),
    ],
)
def test_when_the_second_opinion_does_not_serve_the_first_refusal_is_passed_through_unchanged(
    scripted: Any, mock_provider: Any, proxy_server: Any, second: Reply, outcome: str
) -> None:
    a = scripted(refusal(DEEPSEEK_PASS_BACK))
    b = scripted(second)
    c: MockProvider = mock_provider("c")
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url), ("c", c.url))
    response = httpx.post(
        f"{proxy.url}/chat/completions",
        json={"model": "gpt-4", "messages": MESSAGES, **extra_fields(DEEPSEEK_PASS_BACK)},
    )
    assert response.status_code == 400 and response.content == DEEPSEEK_PASS_BACK.raw
    assert (response.headers["x-gatewayz-provider"], response.headers["x-gatewayz-attempts"]) == ("a", "2")
    assert (len(a.requests), len(b.requests), c.stats()["requests"]) == (1, 1, 0)  # never more than one extra
    assert metric(proxy, "gatewayz_second_opinions_total", model="gpt-4", outcome=outcome) == 1


@pytest.mark.parametrize(
    ("body", "proxy_settings"),
    [
        ({"provider": {"order": ["a", "b"], "allow_fallbacks": False}}, {}),
        ({}, {"second_opinion": False}),
        ({}, {"max_attempts": 1}),
    ],
    ids=["allow_fallbacks_false", "second_opinion_off", "one_attempt"],
)
def test_no_second_opinion_when_the_request_or_the_config_says_no(
    scripted: Any, mock_provider: Any, proxy_server: Any, body: dict[str, Any], proxy_settings: dict[str, Any]
) -> None:
    a = scripted(refusal(VLLM_AUTO_TOOLS))
    b: MockProvider = mock_provider("b")
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url), proxy=proxy_settings)
    response = httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES, **body})
    assert response.status_code == 400 and response.content == VLLM_AUTO_TOOLS.raw
    assert b.stats()["requests"] == 0
    assert metric(proxy, "gatewayz_second_opinions_total") == 0


def test_a_stream_gets_its_second_opinion_before_anything_is_committed(
    scripted: Any, mock_provider: Any, proxy_server: Any
) -> None:
    a = scripted(refusal(VLLM_AUTO_TOOLS))
    b: MockProvider = mock_provider("b")
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url))
    with sdk(proxy) as client:
        stream = client.chat.completions.create(model="gpt-4", messages=MESSAGES, stream=True)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text.startswith("b#")
    assert a.requests[0]["body"]["stream"] is True
    assert metric(proxy, "gatewayz_second_opinions_total", outcome="served") == 1


# --- model fallbacks: a model that every offer refuses moves on to the next model ------------------------------------


def chain_config(primary: str, second: str) -> Any:
    from proxy.config import config_from_mapping

    providers = [
        {"slug": s, "name": s.title(), "base_url": u, "listing": "none"}
        for s, u in (("primary", primary), ("second", second))
    ]
    models = [
        {
            "model_id": "gpt-4",
            "offers": [{"provider": "primary", "provider_model_id": "openai/gpt-4"}],
            "fallbacks": ["gpt-4o"],
        },
        {"model_id": "gpt-4o", "offers": [{"provider": "second", "provider_model_id": "openai/gpt-4o"}]},
    ]
    return config_from_mapping(
        {"proxy": {"deadline_s": 20, "first_byte_timeout_s": 5}, "providers": providers, "models": models}, "(test)", {}
    )


def test_a_model_whose_every_offer_refused_the_request_moves_on_to_its_fallback(
    scripted: Any, mock_provider: Any, proxy_server: Any
) -> None:
    primary = scripted(refusal(OLLAMA_TOOLS))
    second: MockProvider = mock_provider("second")
    proxy = proxy_server(chain_config(primary.url, second.url))
    response = httpx.post(
        f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES, **extra_fields(OLLAMA_TOOLS)}
    )
    assert response.status_code == 200
    assert (response.headers["x-gatewayz-model"], response.headers["x-gatewayz-provider"]) == ("gpt-4o", "second")


def test_when_every_model_refused_the_request_the_first_refusal_is_what_the_client_gets(
    scripted: Any, proxy_server: Any
) -> None:
    primary = scripted(refusal(OLLAMA_TOOLS))
    second = scripted(refusal(XAI_PRESENCE))
    proxy = proxy_server(chain_config(primary.url, second.url))
    response = httpx.post(
        f"{proxy.url}/chat/completions",
        json={"model": "gpt-4", "messages": MESSAGES, **extra_fields(OLLAMA_TOOLS), **extra_fields(XAI_PRESENCE)},
    )
    assert response.status_code == 400 and response.content == OLLAMA_TOOLS.raw
    assert (response.headers["x-gatewayz-provider"], response.headers["x-gatewayz-attempts"]) == ("primary", "2")
