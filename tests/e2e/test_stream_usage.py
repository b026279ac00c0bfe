"""Every stream priced, over real sockets with the official SDKs: the proxy asks for the usage a
client did not, and the client reads what it would have read; an offer that refuses the ask is
asked again without it (no failure, remembered) and its usage estimated; OpenRouter's usage
accounting answers the exact cost; a Messages client served by a chat offer is priced."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import openai
import pytest

from proxy.billing.cost import cost_text
from proxy.failover.accounting import request_cost
from proxy.failover.record import RequestRecord
from tests.harness import gateway_config

MESSAGES = [{"role": "user", "content": "tell me something short"}]
BODY = {"model": "gpt-4", "messages": MESSAGES, "stream": True}
PRICES = {"a": (0.0000025, 0.00001)}  # USD per prompt and per completion token
VOLATILE = re.compile(rb'"(id|created)":("[^"]*"|\d+)')


def records_of(proxy: Any) -> list[RequestRecord]:
    """Every request record the proxy accounts from now on (read in the test's thread once its request ended)."""
    accounting = proxy.gateway.accounting
    seen: list[RequestRecord] = []
    ended = accounting.request_ended

    def keep(record: RequestRecord) -> None:
        seen.append(record)
        ended(record)

    accounting.request_ended = keep
    return seen


def last_record(records: list[RequestRecord], count: int = 1) -> RequestRecord:
    """The latest record, once `count` requests are accounted (a request is accounted just after
    its last byte went out, so the client may read its answer first)."""
    deadline = time.monotonic() + 5
    while len(records) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return records[-1]


def priced(mock_provider: Callable[..., Any], proxy_server: Callable[..., Any], **mock: Any) -> tuple[Any, Any]:
    provider = mock_provider("a", **mock)
    return provider, proxy_server(gateway_config([("a", provider.url)], prices=PRICES))


def sent_bodies(mock: Any) -> list[dict[str, Any]]:
    return [entry["body"] for entry in mock.stats()["recent"]]


def exact_cost(prompt: int, completion: int) -> Decimal:
    return prompt * Decimal(repr(PRICES["a"][0])) + completion * Decimal(repr(PRICES["a"][1]))


def without_volatile(raw: bytes) -> bytes:
    return VOLATILE.sub(b"", raw)


def test_a_stream_without_include_usage_is_priced_and_its_client_reads_no_usage(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    mock, proxy = priced(mock_provider, proxy_server)
    records = records_of(proxy)
    sdk = openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0)
    chunks = list(sdk.chat.completions.create(model="gpt-4", messages=MESSAGES, stream=True))  # type: ignore[arg-type]
    assert chunks and all(c.usage is None and c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "".join(f"a#{i} " for i in range(1, 6))
    assert sent_bodies(mock)[-1]["stream_options"] == {"include_usage": True}  # the proxy asked
    record = last_record(records)
    assert record.usage is not None and not record.usage.estimated
    assert (record.usage.prompt_tokens, record.usage.completion_tokens) == (4, 5)  # what the mock reported
    assert request_cost(record) == exact_cost(4, 5)
    assert record.finish_reason == "stop"  # what the watch saw
    assert proxy.metric("gatewayz_tokens_total", provider="a", kind="completion") == 5
    # byte for byte what the provider sends a client that did not ask (but for its ids and times)
    through = httpx.post(f"{proxy.url}/chat/completions", json=BODY, timeout=10).content
    direct = httpx.post(f"{mock.url}/chat/completions", json=BODY, timeout=10).content
    assert b'"usage"' not in through
    assert without_volatile(through) == without_volatile(direct)


def test_a_stream_with_include_usage_is_relayed_unchanged(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    mock, proxy = priced(mock_provider, proxy_server)
    records = records_of(proxy)
    body = {**BODY, "stream_options": {"include_usage": True}}
    through = httpx.post(f"{proxy.url}/chat/completions", json=body, timeout=10).content
    direct = httpx.post(f"{mock.url}/chat/completions", json=body, timeout=10).content
    assert b'"choices":[],' in through and without_volatile(through) == without_volatile(direct)
    sdk = openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0)
    stream = sdk.chat.completions.create(
        model="gpt-4", messages=MESSAGES, stream=True, stream_options={"include_usage": True}  # type: ignore[arg-type]
    )
    usage = [c.usage for c in stream if c.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens == 5
    assert last_record(records, 2).usage is not None and records[-1].usage.completion_tokens == 5


def test_an_offer_that_refuses_stream_options_is_asked_again_without_it_and_remembered(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    mock, proxy = priced(mock_provider, proxy_server, refuse_stream_options=True)
    records = records_of(proxy)
    sdk = openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0)
    text = "".join(
        c.choices[0].delta.content or ""
        for c in sdk.chat.completions.create(model="gpt-4", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
        if c.choices
    )
    assert text == "".join(f"a#{i} " for i in range(1, 6))
    first, again = sent_bodies(mock)
    assert first["stream_options"] == {"include_usage": True} and "stream_options" not in again
    record = last_record(records)
    assert [t.attempt.outcome for t in record.tried] == ["ok"]  # one attempt: the refusal was the offer's limit
    assert record.usage is not None and record.usage.estimated
    assert record.usage.prompt_tokens == -(-len(MESSAGES[0]["content"]) // 4)
    assert record.usage.completion_tokens == -(-len(text) // 4)
    offer = record.served.offer if record.served is not None else None
    assert offer is not None
    view = proxy.gateway.state.view(offer, 0.0)
    assert view.cooldown_until == 0 and proxy.gateway.state.refuses_usage_ask(offer)
    assert proxy.metric("gatewayz_failovers_total") == 0
    mock.reset_stats()
    httpx.post(f"{proxy.url}/chat/completions", json=BODY, timeout=10)
    assert ["stream_options" in body for body in sent_bodies(mock)] == [False]  # no round trip again
    assert last_record(records, 2).usage is not None and records[-1].usage.estimated


def test_usage_accounting_gives_the_exact_cost_of_a_whole_answer(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    mock, proxy = priced(mock_provider, proxy_server)
    records = records_of(proxy)
    sdk = openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0)
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4", messages=MESSAGES, extra_body={"usage": {"include": True}}  # type: ignore[arg-type]
    )
    completion = raw.parse()
    assert completion.usage is not None
    prompt, done = completion.usage.prompt_tokens, completion.usage.completion_tokens
    expected = exact_cost(prompt, done)
    assert expected == request_cost(last_record(records))
    assert records[-1].finish_reason == completion.choices[0].finish_reason == "stop"
    assert f'"cost":{cost_text(expected)},'.encode() in raw.http_response.content
    assert (completion.usage.model_extra or {})["cost_details"] == {"upstream_inference_cost": float(expected)}
    assert "usage" not in sent_bodies(mock)[-1]  # the proxy's to answer: never forwarded


def test_usage_accounting_gives_a_stream_its_usage_chunk_with_the_cost(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    mock, proxy = priced(mock_provider, proxy_server)
    records = records_of(proxy)
    raw = httpx.post(
        f"{proxy.url}/chat/completions", json={**BODY, "usage": {"include": True}}, timeout=10
    ).content  # the client did not ask include_usage: it gets the usage chunk all the same, as OpenRouter's do
    assert b'"usage":null' not in raw
    events = [line for line in raw.split(b"\n") if b'"cost":' in line]
    assert len(events) == 1
    expected = request_cost(last_record(records))
    assert expected == exact_cost(4, 5)
    assert f'"cost":{cost_text(expected)},'.encode() in events[0]
    assert "usage" not in sent_bodies(mock)[-1]


def test_a_bad_usage_field_is_refused_in_openai_shape(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    _, proxy = priced(mock_provider, proxy_server)
    answer = httpx.post(f"{proxy.url}/chat/completions", json={**BODY, "usage": {"include": "yes"}}, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "usage"


def test_a_messages_stream_served_by_a_chat_offer_that_refuses_stream_options_is_priced(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    gpt = mock_provider("a", refuse_stream_options=True)
    proxy = proxy_server(gateway_config([("a", gpt.url)], {"claude-x": ["a"]}, prices=PRICES))
    records = records_of(proxy)
    with anthropic.Anthropic(base_url=proxy.base, api_key="u", max_retries=0) as sdk, sdk.messages.stream(
        model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "say hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        message = stream.get_final_message()
    assert text == "".join(f"a#{i} " for i in range(1, 6)) and message.stop_reason == "end_turn"
    record = last_record(records)
    assert record.usage is not None and record.usage.estimated and record.usage.completion_tokens > 0
    assert record.finish_reason == "stop"  # the chat offer's, as it said it
    assert request_cost(record) == exact_cost(record.usage.prompt_tokens, record.usage.completion_tokens)


@pytest.mark.parametrize("refuse", [False, True])
def test_a_legacy_completion_stream_is_priced(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any], refuse: bool
) -> None:
    _, proxy = priced(mock_provider, proxy_server, refuse_stream_options=refuse)
    records = records_of(proxy)
    sdk = openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0)
    chunks = list(sdk.completions.create(model="gpt-4", prompt="say hi", stream=True))
    assert chunks and all(c.usage is None and c.choices for c in chunks)
    usage = last_record(records).usage
    assert usage is not None and usage.completion_tokens > 0 and usage.estimated is refuse


def test_the_record_keeps_why_a_native_messages_or_responses_stream_ended(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    claude, gpt = mock_provider("claude"), mock_provider("a")
    config = gateway_config(
        [("claude", claude.url), ("a", gpt.url)], {"claude-x": ["claude"], "gpt-4": ["a"]}, apis={"claude": "anthropic"},
        env={"CLAUDE_API_KEY": "sk-ant-claude-0123456789"},
    )  # fmt: skip
    proxy = proxy_server(config)
    records = records_of(proxy)
    with anthropic.Anthropic(base_url=proxy.base, api_key="u", max_retries=0) as sdk, sdk.messages.stream(
        model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "say hi"}]
    ) as stream:
        assert stream.get_final_message().stop_reason == "end_turn"
    assert last_record(records).finish_reason == "end_turn"
    sdk_openai = openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0)
    events = list(sdk_openai.responses.create(model="gpt-4", input="say hi", stream=True))
    assert events[-1].type == "response.completed"
    assert last_record(records, 2).finish_reason == "completed"
