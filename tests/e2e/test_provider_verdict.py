"""The verdict end to end: what real providers say inside a 200 or in a 4xx body, over real sockets,
with the official openai SDK as the client. Each numbered case is one of issue 11's; the provider's
bytes are the shapes recorded from OpenRouter, Groq, llama.cpp-family servers and others."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from proxy.mock.testing import MockProvider
from tests.harness import CapturedLogs, ProxyServer, gateway_config
from tests.scripted_provider import DONE, Reply, ScriptedProvider, chunk, completion, event, json_reply, usage_chunk

MESSAGES: Any = [{"role": "user", "content": "hello"}]
ADMIN_TOKEN = "admin-token-verdict-zzzzzzzz"
OPENROUTER_ERROR = {"error": {"message": "Provider returned error", "code": 502,
                              "metadata": {"raw": "upstream overloaded", "provider_name": "Example"}}}


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


def serve(proxy_server: Any, *providers: tuple[str, str], proxy: dict[str, Any] | None = None,
          contexts: dict[str, int] | None = None, prices: dict[str, tuple[float, float]] | None = None) -> ProxyServer:
    config = gateway_config(list(providers), proxy=proxy, prices=prices, env={"FAILOVER_ADMIN_TOKEN": ADMIN_TOKEN})
    if contexts:
        from dataclasses import replace

        models = tuple(
            replace(m, offers=tuple(replace(o, context_length=contexts.get(o.provider)) for o in m.offers))
            for m in config.models
        )
        config = replace(config, models=models)
    return proxy_server(config)


def sdk(proxy: ProxyServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0)


def access_lines(logs: CapturedLogs) -> list[dict[str, Any]]:
    return [json.loads(line) for line in logs.lines if line.startswith('{"request_id"')]


def await_access_lines(logs: CapturedLogs, count: int = 1, timeout: float = 10.0) -> None:
    """The access line is written once the answer has gone out, a moment after the client read it:
    wait for it while the logs are still captured."""
    deadline = time.monotonic() + timeout
    while len(access_lines(logs)) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def stream_text(stream: Any) -> str:
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def data_events(raw: bytes) -> list[str]:
    return [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]


# 1. a non-streaming 200 that is an error, or carries no answer ------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [(OPENROUTER_ERROR, "error_in_answer"), ({"id": "x", "object": "chat.completion", "choices": None}, "empty_answer")],
)
def test_1_a_200_that_is_an_error_fails_over(
    scripted: Any, mock_provider: Any, proxy_server: Any, body: Any, code: str
) -> None:
    a = scripted(json_reply(body))
    b = mock_provider("b")
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url))
    with CapturedLogs().installed() as logs:
        raw = sdk(proxy).chat.completions.with_raw_response.create(model="gpt-4", messages=MESSAGES)
        answer = raw.parse()
        await_access_lines(logs)
    assert answer.choices[0].message.content.startswith("b#")
    assert raw.headers["x-gatewayz-provider"] == "b" and raw.headers["x-gatewayz-attempts"] == "2"
    assert proxy.metric("gatewayz_upstream_attempts_total", provider="a", result=code) == 1
    assert proxy.metric("gatewayz_failovers_total", from_provider="a", reason=code) == 1
    assert access_lines(logs)[-1]["tried"] == [f"a:{code}", "b:ok"]
    assert proxy.gateway.state.offers[("a", "a/gpt-4")].counts.errors == 1  # against the offer's health


def test_1_every_offer_answering_an_error_in_a_200_is_a_503(scripted: Any, proxy_server: Any) -> None:
    a = scripted(json_reply(OPENROUTER_ERROR))
    proxy = serve(proxy_server, ("a", a.url))
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(proxy).chat.completions.create(model="gpt-4", messages=MESSAGES)
    assert caught.value.status_code == 503
    assert caught.value.body["attempts"][0]["status"] == "error_in_answer"  # type: ignore[index]
    assert proxy.metric("gatewayz_requests_total", outcome="all_providers_failed") == 1


# 2. keep-alive comments: not a commit, not progress ------------------------------------------------------


def test_2_comment_then_error_event_fails_over_with_no_error_shown(
    scripted: Any, mock_provider: Any, proxy_server: Any
) -> None:
    a = scripted(Reply(pieces=(b": OPENROUTER PROCESSING\n\n", event(OPENROUTER_ERROR)), gap_s=0.05))
    b = mock_provider("b")
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url))
    raw = httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES, "stream": True})
    found = data_events(raw.content)
    assert raw.headers["x-gatewayz-provider"] == "b"
    assert found[-1] == "[DONE]" and not any('"error"' in e for e in found)
    assert b": OPENROUTER PROCESSING" not in raw.content  # a failed offer's held bytes never reach the client
    assert stream_text(sdk(proxy).chat.completions.create(model="gpt-4", messages=MESSAGES, stream=True)).startswith(
        "b#"
    )
    assert proxy.metric("gatewayz_failovers_total", from_provider="a", reason="error_in_answer") == 2


def test_2_keep_alive_comments_do_not_count_as_the_first_output(
    scripted: Any, mock_provider: Any, proxy_server: Any
) -> None:
    comments = tuple(b": OPENROUTER PROCESSING\n\n" for _ in range(12))
    a = scripted(Reply(pieces=(*comments, chunk("late"), DONE), gap_s=0.5))  # comments for 6 s
    b = mock_provider("b")
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url), proxy={"first_byte_timeout_s": 2})
    started = time.perf_counter()
    text = stream_text(sdk(proxy).chat.completions.create(model="gpt-4", messages=MESSAGES, stream=True))
    assert text.startswith("b#")
    assert 2.0 <= time.perf_counter() - started < 5.0
    assert proxy.metric("gatewayz_failovers_total", from_provider="a", reason="first_byte_timeout") == 1


def test_2_a_provider_that_only_sends_comments_after_output_is_ended_by_the_idle_timeout(
    scripted: Any, proxy_server: Any
) -> None:
    a = scripted(Reply(pieces=(chunk("hi"), *(b": keep-alive\n\n" for _ in range(40))), gap_s=0.2))
    proxy = serve(proxy_server, ("a", a.url), proxy={"stream_idle_timeout_s": 1})
    started = time.perf_counter()
    raw = httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES, "stream": True},
                     timeout=20)
    assert 1.0 <= time.perf_counter() - started < 4.0  # the comments would have held it for 8 s
    found = data_events(raw.content)
    assert json.loads(found[-1])["error"]["code"] == "stream_idle_timeout"
    assert proxy.metric("gatewayz_requests_total", outcome="stream_idle_timeout") == 1


# 3. a large first event is judged the same however the network cuts it -----------------------------------


@pytest.mark.parametrize("piece", [None, 16 * 1024])
def test_3_a_100_kb_first_event_is_served_in_one_read_or_in_16_kib_pieces(
    scripted: Any, mock_provider: Any, proxy_server: Any, piece: int | None
) -> None:
    image = "data:image/png;base64," + "iVBORw0KGgo" * 9300  # about 100 KB in one delta
    body = chunk(image) + chunk(finish="stop") + DONE
    pieces = (body,) if piece is None else tuple(body[i : i + piece] for i in range(0, len(body), piece))
    a = scripted(Reply(pieces=pieces, gap_s=0.01))
    b = mock_provider("b")
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url))
    raw = sdk(proxy).chat.completions.with_raw_response.create(model="gpt-4", messages=MESSAGES, stream=True)
    assert raw.headers["x-gatewayz-provider"] == "a"
    assert stream_text(raw.parse()) == image
    assert b.stats()["requests"] == 0


# 4. a client that hangs up right after [DONE] -------------------------------------------------------------


@pytest.mark.slow
def test_4_clients_hanging_up_after_done_are_successes_with_their_usage(scripted: Any, proxy_server: Any) -> None:
    body = (chunk(role="assistant", content=""), chunk("hi"), chunk(finish="stop"), usage_chunk(7, 2), DONE)
    a = scripted(Reply(pieces=body, end_delay_s=0.2))  # the provider's body ends 200 ms after [DONE]
    proxy = serve(proxy_server, ("a", a.url), prices={"a": (0.001, 0.002)})
    client = sdk(proxy)
    with CapturedLogs().installed() as logs:
        for _ in range(20):
            stream = client.chat.completions.create(model="gpt-4", messages=MESSAGES, stream=True,
                                                    stream_options={"include_usage": True})
            assert stream_text(stream) == "hi"
        deadline = time.monotonic() + 10
        while proxy.metric("gatewayz_requests_total", outcome="ok") < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        await_access_lines(logs, 20)
    assert proxy.metric("gatewayz_requests_total", outcome="ok") == 20
    assert proxy.metric("gatewayz_requests_total", outcome="client_disconnected") == 0
    assert proxy.metric("gatewayz_tokens_total", provider="a", kind="prompt") == 140
    assert proxy.metric("gatewayz_cost_usd_total", provider="a") == pytest.approx(20 * (7 * 0.001 + 2 * 0.002))
    assert [line["status"] for line in access_lines(logs)] == [200] * 20


# 5. the end of a stream -----------------------------------------------------------------------------------


@pytest.mark.parametrize("last", [chunk(finish="stop"), chunk(finish="stop").rstrip(b"\n")])
def test_5_a_complete_stream_without_done_ends_cleanly(scripted: Any, proxy_server: Any, last: bytes) -> None:
    a = scripted(Reply(pieces=(chunk(role="assistant", content=""), chunk("whole answer"), last)))
    proxy = serve(proxy_server, ("a", a.url))
    assert stream_text(sdk(proxy).chat.completions.create(model="gpt-4", messages=MESSAGES, stream=True)) == (
        "whole answer"
    )
    raw = httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES, "stream": True})
    found = data_events(raw.content)
    assert found[-1] == "[DONE]" and not any('"error"' in e for e in found)
    assert proxy.metric("gatewayz_requests_total", outcome="ok") == 2


def test_5_done_inside_content_does_not_make_a_cut_look_clean(scripted: Any, proxy_server: Any) -> None:
    text = "to end a stream, servers send\n\ndata: [DONE]\n\nas the last event"
    a = scripted(Reply(pieces=(chunk(text), chunk(" and then"))))  # ends cleanly, yet incomplete
    proxy = serve(proxy_server, ("a", a.url))
    with pytest.raises(openai.APIError):
        stream_text(sdk(proxy).chat.completions.create(model="gpt-4", messages=MESSAGES, stream=True))
    raw = httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES, "stream": True})
    found = data_events(raw.content)
    assert json.loads(found[0])["choices"][0]["delta"]["content"] == text
    assert json.loads(found[-1])["error"]["code"] == "stream_broken"
    assert [e for e in found if '"error"' in e] == [found[-1]]  # exactly one error event
    assert proxy.metric("gatewayz_requests_total", outcome="stream_broken") == 2


# 6. an in-band error after commit -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [event({"error": {"message": "Provider returned error", "code": 502}}), chunk(finish="error")],
)
def test_6_an_in_band_error_after_commit_is_relayed_and_counted(
    scripted: Any, proxy_server: Any, failure: bytes
) -> None:
    a = scripted(Reply(pieces=(chunk("partial "), failure, DONE)))
    proxy = serve(proxy_server, ("a", a.url), proxy={"answer_model": "provider"})  # the provider's bytes, untouched
    with CapturedLogs().installed() as logs:
        raw = httpx.post(f"{proxy.url}/chat/completions",
                         json={"model": "gpt-4", "messages": MESSAGES, "stream": True})
        await_access_lines(logs)
    found = data_events(raw.content)
    assert found == [e.decode()[6:-2] for e in (chunk("partial "), failure)] + ["[DONE]"]  # as it came, nothing added
    assert proxy.metric("gatewayz_requests_total", outcome="stream_error") == 1
    assert proxy.metric("gatewayz_upstream_attempts_total", provider="a", result="stream_error") == 1
    assert proxy.metric("gatewayz_upstream_attempts_total", provider="a", result="ok") == 0
    assert access_lines(logs)[-1]["outcome"] == "stream_error"
    assert access_lines(logs)[-1]["tried"] == ["a:stream_error"]
    assert proxy.gateway.state.offers[("a", "a/gpt-4")].counts.errors == 1


def test_6_the_sdk_sees_the_in_band_error(scripted: Any, proxy_server: Any) -> None:
    a = scripted(Reply(pieces=(chunk("partial "), event({"error": {"message": "upstream overloaded"}}))))
    proxy = serve(proxy_server, ("a", a.url))
    with pytest.raises(openai.APIError, match="upstream overloaded"):
        stream_text(sdk(proxy).chat.completions.create(model="gpt-4", messages=MESSAGES, stream=True))


# 7. offer-specific 4xx ------------------------------------------------------------------------------------


GROQ_413 = {"error": {"message": "Request too large for model `llama-3.3-70b-versatile` in organization `org_01` "
                                 "service tier `on_demand` on tokens per minute (TPM): Limit 6000, Requested 14810, "
                                 "please reduce your message size and try again.", "type": "tokens",
                      "code": "rate_limit_exceeded"}}


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (json_reply({"error": {"message": "Client Closed Request"}}, status=499), "499"),
        (json_reply(GROQ_413, status=413, headers=(("retry-after", "7"),)), "over_rate_budget"),
        (json_reply({"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with this model.",
                               "code": "unsupported_parameter"}}, status=400), "unsupported"),
        (json_reply({"error": "hf.co/some/model does not support tools"}, status=400), "unsupported"),
        (json_reply({"error": {"message": "deepseek/deepseek-coder is not a valid model ID", "code": 400}},
                    status=400), "unsupported"),
    ],
)
def test_7_offer_specific_refusals_fail_over(
    scripted: Any, mock_provider: Any, proxy_server: Any, reply: Reply, reason: str
) -> None:
    a = scripted(reply)
    b = mock_provider("b")
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url))
    raw = sdk(proxy).chat.completions.with_raw_response.create(model="gpt-4", messages=MESSAGES)
    assert raw.headers["x-gatewayz-provider"] == "b"
    assert proxy.metric("gatewayz_failovers_total", from_provider="a", reason=reason) == 1
    sdk(proxy).chat.completions.create(model="gpt-4", messages=MESSAGES)
    assert len(a.requests) == 2  # no cooldown: smaller or other requests may still fit


def test_7_a_rate_limit_as_413_that_says_when_cools_the_offer(
    scripted: Any, mock_provider: Any, proxy_server: Any
) -> None:
    limited = {"error": {"message": "Rate limit reached on tokens per minute (TPM): Limit 6000, Used 5900, "
                                    "Requested 300. Please try again in 30s.", "code": "rate_limit_exceeded"}}
    a = scripted(json_reply(limited, status=413))
    b = mock_provider("b")
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url))
    for _ in range(3):
        assert sdk(proxy).chat.completions.with_raw_response.create(
            model="gpt-4", messages=MESSAGES).headers["x-gatewayz-provider"] == "b"
    assert len(a.requests) == 1  # cooling down for the 30 s the provider asked
    assert proxy.metric("gatewayz_failovers_total", from_provider="a", reason="rate_limited") == 1


CONTEXT_400 = {"error": {"message": "This model's maximum context length is 8192 tokens. However, you requested "
                                    "9000 tokens. Please reduce the length of the messages or completion.",
                         "type": "invalid_request_error", "param": None, "code": "invalid_request_error"}}


def test_7_context_length_fails_over_to_a_larger_context(scripted: Any, mock_provider: Any, proxy_server: Any) -> None:
    a = scripted(json_reply(CONTEXT_400, status=400))
    small = mock_provider("small")
    large = mock_provider("large")
    proxy = serve(proxy_server, ("a", a.url), ("small", small.url), ("large", large.url),
                  contexts={"a": 8192, "small": 8192, "large": 131072}, proxy={"max_attempts": 2})
    raw = sdk(proxy).chat.completions.with_raw_response.create(model="gpt-4", messages=MESSAGES)
    assert raw.headers["x-gatewayz-provider"] == "large"
    assert raw.headers["x-gatewayz-attempts"] == "2"
    assert small.stats()["requests"] == 0  # its context is no larger: not tried
    assert proxy.gateway.state.offers.get(("a", "a/gpt-4")) is None  # not counted against the offer


def test_7_context_length_is_passed_through_when_no_offer_is_larger(
    scripted: Any, mock_provider: Any, proxy_server: Any
) -> None:
    a = scripted(json_reply(CONTEXT_400, status=400))
    b = mock_provider("b")
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url), contexts={"a": 8192, "b": 4096})
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(proxy).chat.completions.create(model="gpt-4", messages=MESSAGES)
    assert "maximum context length is 8192" in str(caught.value)
    assert caught.value.response.headers["x-gatewayz-provider"] == "a"
    assert b.stats()["requests"] == 0
    assert proxy.metric("gatewayz_requests_total", outcome="upstream_400") == 1


def test_7_other_client_mistakes_still_pass_through(scripted: Any, mock_provider: Any, proxy_server: Any) -> None:
    mistake = {"error": {"message": "'messages' must contain at least one message", "type": "invalid_request_error"}}
    a = scripted(json_reply(mistake, status=400))
    b = mock_provider("b")
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url))
    response = httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES})
    assert response.status_code == 400 and response.json() == mistake
    assert b.stats()["requests"] == 0


# 8. a provider's account failure cools the whole provider down --------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        json_reply({"error": {"message": "Invalid API Key", "code": "invalid_api_key"}}, status=401),
        json_reply({"error": {"message": "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
                              "code": 402}}, status=402),
        json_reply({"error": {"message": "You exceeded your current quota, please check your plan and billing "
                                         "details.", "type": "insufficient_quota", "code": "insufficient_quota"}},
                   status=429),
    ],
)
def test_8_an_account_failure_is_not_asked_again_on_every_request(
    scripted: Any, mock_provider: Any, proxy_server: Any, reply: Reply
) -> None:
    a = scripted(reply)
    b = mock_provider("b")
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url))
    for _ in range(5):
        raw = sdk(proxy).chat.completions.with_raw_response.create(model="gpt-4", messages=MESSAGES)
        assert raw.headers["x-gatewayz-provider"] == "b"
    assert len(a.requests) == 1
    view = httpx.get(f"{proxy.base}/admin/failover/model/gpt-4", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    cooling = {o["provider"]: o["cooling_down_s"] for o in view.json()["failover_order"]}
    assert 250 < cooling["a"] <= 300 and cooling["b"] == 0  # account_cooldown_s, default 300


def test_8_after_account_cooldown_s_one_trial_rechecks_the_provider(
    scripted: Any, mock_provider: Any, proxy_server: Any
) -> None:
    a = scripted(json_reply({"error": {"message": "Invalid API Key"}}, status=401), json_reply(completion("a back")))
    b = mock_provider("b")
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url), proxy={"account_cooldown_s": 0.5})
    assert sdk(proxy).chat.completions.with_raw_response.create(
        model="gpt-4", messages=MESSAGES).headers["x-gatewayz-provider"] == "b"
    time.sleep(0.6)
    assert sdk(proxy).chat.completions.create(model="gpt-4", messages=MESSAGES).choices[0].message.content == "a back"
    assert "a" not in proxy.gateway.state.provider_cooldowns


# the extra cases ------------------------------------------------------------------------------------------


def test_a_role_only_first_chunk_then_an_error_fails_over(
    scripted: Any, mock_provider: Any, proxy_server: Any
) -> None:
    a = scripted(Reply(pieces=(chunk(role="assistant", content=""), event(OPENROUTER_ERROR)), gap_s=0.05))
    b = mock_provider("b")
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url))
    text = stream_text(sdk(proxy).chat.completions.create(model="gpt-4", messages=MESSAGES, stream=True))
    assert text.startswith("b#")
    assert proxy.metric("gatewayz_failovers_total", from_provider="a", reason="error_in_answer") == 1


@pytest.mark.parametrize(
    "pieces", [(b": OPENROUTER PROCESSING\n\n", b": OPENROUTER PROCESSING\n\n"), (chunk(role="assistant"), DONE)]
)
def test_a_stream_that_ends_before_any_output_fails_over(
    scripted: Any, mock_provider: Any, proxy_server: Any, pieces: tuple[bytes, ...]
) -> None:
    a = scripted(Reply(pieces=pieces))
    b = mock_provider("b")
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url))
    text = stream_text(sdk(proxy).chat.completions.create(model="gpt-4", messages=MESSAGES, stream=True))
    assert text.startswith("b#")
    assert proxy.metric("gatewayz_failovers_total", from_provider="a", reason="empty_answer") == 1


@pytest.mark.slow
def test_100_sdk_streams_in_a_row_are_100_ok_with_their_usage(mock_provider: Any, proxy_server: Any) -> None:
    a: MockProvider = mock_provider("a", chunks=3)
    proxy = serve(proxy_server, ("a", a.url))
    client = sdk(proxy)
    prompt = 0
    for _ in range(100):
        stream = client.chat.completions.create(model="gpt-4", messages=MESSAGES, stream=True,
                                                stream_options={"include_usage": True})
        last = None
        for part in stream:
            last = part
        assert last is not None and last.usage is not None
        prompt += last.usage.prompt_tokens
    deadline = time.monotonic() + 10
    while proxy.metric("gatewayz_requests_total", outcome="ok") < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.metric("gatewayz_requests_total", outcome="ok") == 100
    assert proxy.metric("gatewayz_upstream_attempts_total", provider="a", result="ok") == 100
    assert proxy.metric("gatewayz_tokens_total", provider="a", kind="prompt") == prompt
