"""The Messages API through the proxy, with the official anthropic SDK as the client (sync, async,
`messages.stream`, tools with a tool-result turn, count_tokens), over real sockets: natively to
Anthropic-speaking mock providers, translated to OpenAI-speaking ones, and a chat request from the
openai SDK served by an Anthropic-speaking offer. The mocks send the shapes Anthropic's docs record
(`proxy.mock.answers.messages_api`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.harness import gateway_config

CLAUDE = {"claude": "anthropic", "claude2": "anthropic"}
HEAD = {"x-gatewayz-provider": "claude"}  # that provider first: the order a test needs, whatever the ranking
OPENED: list[Any] = []


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()


def client(proxy: Any, headers: dict[str, str] | None = None, key: str = "unused") -> anthropic.Anthropic:
    sdk = anthropic.Anthropic(base_url=proxy.base, api_key=key, default_headers=HEAD if headers is None else headers, max_retries=0)
    OPENED.append(sdk)
    return sdk


def ask(**extra: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 64, "messages": [{"role": "user", "content": "say hi"}], **extra}


def proxy_for(proxy_server: Callable[..., Any], *mocks: Any, **kwargs: Any) -> Any:
    providers = [(mock.name, mock.url) for mock in mocks]
    models = {"claude-x": [mock.name for mock in mocks]}
    config = gateway_config(providers, models, apis=CLAUDE, env={"CLAUDE_API_KEY": "sk-ant-claude-0123456789",
                            "CLAUDE2_API_KEY": "sk-ant-claude2-0123456789", "OPENAI_API_KEY": "sk-openai-0123456789"},
                            **kwargs)  # fmt: skip
    return proxy_server(config)


def last_request(mock: Any) -> dict[str, Any]:
    recent: list[dict[str, Any]] = mock.stats()["recent"]
    return recent[-1]


PRICES = {"claude": (0.001, 0.002), "claude2": (0.001, 0.002), "openai": (0.0001, 0.0002)}


def test_an_overloaded_anthropic_offer_fails_over_to_another_one(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    first = mock_provider("claude", fault="status", status=529)
    second = mock_provider("claude2", api_key="sk-ant-claude2-0123456789")
    proxy = proxy_for(proxy_server, first, second, prices=PRICES)
    beta = {"anthropic-beta": "interleaved-thinking-2025-05-14", "anthropic-version": "2023-06-01"}
    answer = client(proxy).messages.with_raw_response.create(**ask(), extra_headers=beta)
    message = answer.parse()
    assert message.content[0].type == "text" and message.content[0].text.startswith("claude2#1 ")
    assert message.stop_reason == "end_turn" and message.model == "claude-x"  # the canonical model (answer_model)
    assert answer.headers["x-gatewayz-provider"] == "claude2" and answer.headers["x-gatewayz-attempts"] == "2"
    sent = last_request(second)
    assert sent["path"] == "/v1/messages" and sent["body"]["model"] == "claude2/claude-x"
    headers = sent["headers"]
    assert headers["x-api-key"] == "sk-ant-claude2-0123456789" and "authorization" not in headers
    assert headers["anthropic-version"] == "2023-06-01"  # the client's own, passed on
    assert headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert proxy.metric("gatewayz_upstream_attempts_total", provider="claude", result="529") == 1
    prompt, completion = message.usage.input_tokens, message.usage.output_tokens
    assert proxy.metric("gatewayz_tokens_total", provider="claude2", kind="prompt") == prompt
    assert proxy.metric("gatewayz_tokens_total", provider="claude2", kind="completion") == completion == 5
    assert proxy.metric("gatewayz_cost_usd_total", provider="claude2") == pytest.approx(
        prompt * 0.001 + completion * 0.002
    )


async def test_a_stream_fails_over_to_an_openai_offer_translated_token_by_token(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    claude = mock_provider("claude", fault="status", status=529)
    gpt = mock_provider("openai", chunk_interval_ms=150)
    proxy = proxy_for(proxy_server, claude, gpt, prices=PRICES)
    arrivals: list[tuple[float, str]] = []
    sdk = anthropic.AsyncAnthropic(base_url=proxy.base, api_key="u", default_headers=HEAD, max_retries=0)
    async with sdk, sdk.messages.stream(**ask()) as stream:
        async for text in stream.text_stream:
            arrivals.append((time.monotonic(), text))
        message = await stream.get_final_message()
    assert [text for _, text in arrivals] == [f"openai#{i} " for i in range(1, 6)]
    assert arrivals[-1][0] - arrivals[0][0] > 0.4  # relayed as they came, not gathered first
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 5
    sent = last_request(gpt)
    assert sent["path"] == "/v1/chat/completions" and sent["body"]["stream_options"] == {"include_usage": True}
    assert sent["body"]["messages"] == [{"role": "user", "content": "say hi"}]
    assert sent["headers"]["authorization"] == "Bearer sk-openai-0123456789"
    assert "x-api-key" not in sent["headers"] and "anthropic-version" not in sent["headers"]
    assert proxy.metric("gatewayz_tokens_total", provider="openai", kind="completion") == 5
    assert proxy.metric("gatewayz_cost_usd_total", provider="openai") == pytest.approx(
        message.usage.input_tokens * 0.0001 + 5 * 0.0002
    )


def test_an_error_event_before_the_first_output_fails_over(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    claude = mock_provider("claude", fault="error_event", after_chunks=3)  # message_start, block start, ping
    claude2 = mock_provider("claude2")
    proxy = proxy_for(proxy_server, claude, claude2)
    with client(proxy).messages.stream(**ask()) as stream:
        text = "".join(stream.text_stream)
    assert text.startswith("claude2#1 ")
    assert claude.stats()["faults_injected"] == {"error_event": 1}
    assert proxy.metric("gatewayz_upstream_attempts_total", provider="claude", result="error_in_answer") == 1


def test_an_error_event_after_commit_is_relayed_and_counted_as_a_stream_error(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    claude = mock_provider("claude", fault="error_event", after_chunks=5)  # two pieces of text, then the error
    proxy = proxy_for(proxy_server, claude, mock_provider("claude2"))
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"), client(proxy).messages.stream(**ask()) as stream:
        seen.extend(stream.text_stream)
    assert seen == ["claude#1 ", "claude#2 "]
    assert proxy.metric("gatewayz_requests_total", route="/v1/messages", outcome="stream_error") == 1


def test_a_stream_cut_mid_way_ends_with_an_anthropic_error_event(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    claude = mock_provider("claude", fault="cut", after_chunks=5)
    proxy = proxy_for(proxy_server, claude)
    with pytest.raises(anthropic.APIStatusError, match="dropped mid-answer"), client(
        proxy
    ).messages.stream(**ask()) as stream:  # fmt: skip
        for _ in stream.text_stream:
            pass
    assert proxy.metric("gatewayz_requests_total", route="/v1/messages", outcome="stream_broken") == 1


WEATHER = {"name": "get_weather", "description": "Get the current weather in a given location",
           "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}  # fmt: skip


@pytest.mark.parametrize("served_by", ["claude", "openai"])
def test_tools_with_a_tool_result_turn(
    served_by: str, mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    proxy = proxy_for(proxy_server, mock_provider("claude"), mock_provider("openai"))
    sdk = client(proxy, {"x-gatewayz-provider": served_by})
    turn = [{"role": "user", "content": "Weather in Paris?"}]
    first = sdk.messages.create(**ask(messages=turn, tools=[WEATHER]))
    call = next(block for block in first.content if block.type == "tool_use")
    assert first.stop_reason == "tool_use" and call.name == "get_weather" and call.input == {"mock": served_by}
    turn += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "15 C"}]},
    ]
    with sdk.messages.stream(**ask(messages=turn, tools=[WEATHER])) as stream:
        second = stream.get_final_message()
    assert second.stop_reason == "end_turn" and second.content[-1].type == "text"
    assert second.content[-1].text.startswith(f"{served_by}#1 ")


def test_count_tokens_is_answered_by_an_anthropic_offer_and_never_estimated(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    claude, gpt = mock_provider("claude"), mock_provider("openai")
    config = gateway_config([("claude", claude.url), ("openai", gpt.url)],
                            {"claude-x": ["openai", "claude"], "gpt-only": ["openai"]}, apis=CLAUDE)  # fmt: skip
    proxy = proxy_server(config)
    sdk = client(proxy, {})
    counted = sdk.messages.count_tokens(model="claude-x", messages=[{"role": "user", "content": "one two three"}])
    assert counted.input_tokens == 3
    assert last_request(claude)["path"] == "/v1/messages/count_tokens"
    assert gpt.stats()["requests"] == 0
    with pytest.raises(anthropic.BadRequestError) as refused:
        sdk.messages.count_tokens(model="gpt-only", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "only by offers that speak the Anthropic Messages API" in str(refused.value)


def test_count_tokens_missing_at_a_provider_does_not_open_its_circuit(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    claude = mock_provider("claude", fault="status", status=404, paths=["/v1/messages/count_tokens"])
    proxy = proxy_for(proxy_server, claude, mock_provider("claude2"), proxy={"circuit_failure_threshold": 2})
    sdk = client(proxy)
    for _ in range(4):
        assert sdk.messages.count_tokens(model="claude-x", messages=[{"role": "user", "content": "a b"}]).input_tokens
    served = sdk.messages.with_raw_response.create(**ask())
    assert served.headers["x-gatewayz-provider"] == "claude" and served.headers["x-gatewayz-attempts"] == "1"


async def test_a_chat_request_is_served_by_an_anthropic_offer(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    claude = mock_provider("claude", api_key="sk-ant-claude-0123456789")
    proxy = proxy_for(proxy_server, mock_provider("openai", fault="status", status=503), claude, prices=PRICES)
    async with openai.AsyncOpenAI(base_url=proxy.url, api_key="u", max_retries=0,
                                  default_headers={"x-gatewayz-provider": "openai"}) as sdk:  # fmt: skip
        answer = await sdk.chat.completions.with_raw_response.create(
            model="claude-x", messages=[{"role": "user", "content": "say hi"}]
        )
        completion = answer.parse()
        chunks = [c async for c in await sdk.chat.completions.create(
            model="claude-x", messages=[{"role": "user", "content": "say hi"}], stream=True,
            stream_options={"include_usage": True})]  # fmt: skip
    assert completion.choices[0].message.content == "claude#1 claude#2 claude#3 claude#4 claude#5 "
    assert completion.choices[0].finish_reason == "stop" and completion.usage is not None
    assert answer.headers["x-gatewayz-provider"] == "claude" and answer.headers["x-gatewayz-attempts"] == "2"
    sent = last_request(claude)
    assert sent["path"] == "/v1/messages" and sent["body"]["max_tokens"] > 0 and sent["body"]["stream"] is True
    assert sent["headers"]["x-api-key"] == "sk-ant-claude-0123456789"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "claude#1 claude#2 claude#3 claude#4 claude#5 "
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert proxy.metric("gatewayz_tokens_total", provider="claude", kind="completion") == 10


def test_every_offer_overloaded_is_anthropics_529(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    proxy = proxy_for(proxy_server, mock_provider("claude", fault="status", status=529),
                      mock_provider("claude2", fault="error_event", after_chunks=1))  # fmt: skip
    with pytest.raises(anthropic.OverloadedError) as failed:
        client(proxy).messages.create(**ask(stream=True))
    error = failed.value.body["error"]  # type: ignore[index]
    assert error["type"] == "overloaded_error" and [a["status"] for a in error["attempts"]] == ["529", "error_in_answer"]
    assert failed.value.response.headers["x-should-retry"] == "false"


def test_cached_prompt_tokens_are_counted(mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]) -> None:
    proxy = proxy_for(proxy_server, mock_provider("claude"), prices=PRICES)
    system = [{"type": "text", "text": "a long stable preamble of eight words", "cache_control": {"type": "ephemeral"}}]
    message = client(proxy).messages.create(**ask(system=system))
    assert message.usage.cache_read_input_tokens == 7 and message.usage.input_tokens == 2
    assert proxy.metric("gatewayz_tokens_total", provider="claude", kind="prompt") == 9  # cached ones included


def test_client_keys_errors_and_untranslatable_requests_in_anthropics_shape(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    gpt = mock_provider("openai")
    config = gateway_config([("openai", gpt.url)], {"claude-x": ["openai"]}, env={"FAILOVER_API_KEYS": "client-key-1"})
    proxy = proxy_server(config)
    assert client(proxy, {}, key="client-key-1").messages.create(**ask()).content[0].text.startswith("openai#1")
    with pytest.raises(anthropic.AuthenticationError) as denied:
        client(proxy, {}, key="wrong").messages.create(**ask())
    assert denied.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    sdk = client(proxy, {}, key="client-key-1")
    bare = httpx.post(f"{proxy.base}/v1/messages", headers={"x-api-key": "client-key-1"},
                      json={"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert bare.status_code == 400
    assert bare.json()["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}
    with pytest.raises(anthropic.BadRequestError, match="web_search_20250305"):
        sdk.messages.create(**ask(tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}]))
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.create(**ask(model="no-such-model"))
    assert gpt.stats()["requests"] == 1


def test_a_request_that_cannot_be_translated_goes_only_to_offers_of_its_own_api(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    claude, gpt = mock_provider("claude"), mock_provider("openai")
    proxy = proxy_for(proxy_server, gpt, claude)
    search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 1}
    served = client(proxy, {"x-gatewayz-provider": "openai"}).messages.with_raw_response.create(**ask(tools=[search]))
    assert served.headers["x-gatewayz-provider"] == "claude" and served.headers["x-gatewayz-attempts"] == "1"
    with openai.OpenAI(base_url=proxy.url, api_key="u", max_retries=0,
                       default_headers={"x-gatewayz-provider": "claude"}) as sdk:  # fmt: skip
        answer = sdk.chat.completions.with_raw_response.create(
            model="claude-x", messages=[{"role": "user", "content": "hi"}], n=2
        )
    assert answer.headers["x-gatewayz-provider"] == "openai" and len(answer.parse().choices) == 2
    assert gpt.stats()["paths"] == {"/v1/chat/completions": 1} and claude.stats()["paths"] == {"/v1/messages": 1}


def test_the_admin_views_show_each_offers_api(mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]) -> None:
    claude, gpt = mock_provider("claude"), mock_provider("openai")
    config = gateway_config([("claude", claude.url), ("openai", gpt.url)], {"claude-x": ["claude", "openai"]},
                            apis=CLAUDE, env={"FAILOVER_ADMIN_TOKEN": "admin-token-1"})  # fmt: skip
    proxy = proxy_server(config)
    auth = {"authorization": "Bearer admin-token-1"}
    order = httpx.get(f"{proxy.base}/admin/failover/model/claude-x", headers=auth).json()["failover_order"]
    assert {o["provider"]: o["api"] for o in order} == {"claude": "anthropic", "openai": "openai"}
    listed = httpx.get(f"{proxy.base}/admin/providers", headers=auth).json()["providers"]
    assert {p["slug"]: p["api"] for p in listed} == {"claude": "anthropic", "openai": "openai"}
