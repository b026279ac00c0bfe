"""Answers by kind, end to end over real sockets with the official openai SDK: an error wherever an
answer carries one fails over (or, after commit, ends the stream as a failure), a finish reason is a
non-empty string, usage is counted wherever the provider put it, a leading byte-order mark is
tolerated and a JSON answer labelled `text/plain` reaches the client as JSON. Each provider's bytes
name their source."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from proxy.mock.testing import MockProvider
from tests.harness import ProxyServer, gateway_config
from tests.scripted_provider import DONE, Reply, ScriptedProvider, chunk, completion, event, json_reply

MESSAGES: Any = [{"role": "user", "content": "hello"}]


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


def serve(proxy_server: Any, *providers: tuple[str, str], prices: dict[str, tuple[float, float]] | None = None) -> Any:
    return proxy_server(gateway_config(list(providers), prices=prices))


def metric(proxy: ProxyServer, name: str, **labels: str) -> float:
    for line in httpx.get(f"{proxy.base}/metrics").text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def stream_raw(proxy: ProxyServer) -> bytes:
    response = httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES, "stream": True})
    return response.content


def data_events(raw: bytes) -> list[str]:
    return [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]


# --- an error wherever the answer carries it ----------------------------------------------------------------------

# OpenRouter reports a provider's failure inside the choice (openrouter.ai/docs/api-reference/streaming, "Handling
# Errors During Streaming"; the choice's `error`: api.koog.ai OpenRouterStreamChoice)
CHOICE_ERROR = {
    "id": "gen-1", "object": "chat.completion", "created": 1, "model": "openai/gpt-4o", "provider": "OpenAI",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "error",
                 "native_finish_reason": "error", "error": {"code": 502, "message": "Network connection lost."}}],
}
# MiniMax answers 200 with its own status envelope (github.com/adrianlyjak/obsidian-aloud-tts/pull/114)
MINIMAX_ENVELOPE = {"id": "x", "choices": None, "base_resp": {"status_code": 1008, "status_msg": "insufficient balance"}}


@pytest.mark.parametrize("body", [CHOICE_ERROR, MINIMAX_ENVELOPE], ids=["choice_error", "vendor_envelope"])
def test_a_200_carrying_an_error_anywhere_fails_over(
    scripted: Any, mock_provider: Any, proxy_server: Any, body: Any
) -> None:
    a = scripted(json_reply(body))
    b: MockProvider = mock_provider("b")
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url))
    with openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4", messages=MESSAGES)
    assert raw.parse().choices[0].message.content.startswith("b#")
    assert metric(proxy, "gatewayz_upstream_attempts_total", provider="a", result="error_in_answer") == 1
    assert metric(proxy, "gatewayz_upstream_attempts_total", provider="a", result="ok") == 0


def test_a_vendor_envelope_as_the_first_stream_frame_is_never_committed(
    scripted: Any, mock_provider: Any, proxy_server: Any
) -> None:
    envelope = event({"id": "x", "choices": [], "base_resp": {"status_code": 1002, "status_msg": "rate limit"},
                      "usage": {"prompt_tokens": 3, "completion_tokens": 0}})
    a = scripted(Reply(pieces=(envelope, DONE)))
    b: MockProvider = mock_provider("b")
    proxy = serve(proxy_server, ("a", a.url), ("b", b.url))
    found = data_events(stream_raw(proxy))
    assert not any("base_resp" in e for e in found) and found[-1] == "[DONE]"
    assert metric(proxy, "gatewayz_failovers_total", from_provider="a", reason="error_in_answer") == 1


def test_an_error_inside_a_choice_after_commit_ends_the_stream_as_a_failure(scripted: Any, proxy_server: Any) -> None:
    midstream = event({"id": "gen-1", "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"content": ""}, "finish_reason": "error",
         "error": {"code": 502, "message": "Network connection lost."}}]})
    a = scripted(Reply(pieces=(chunk("partial "), midstream)))
    proxy = serve(proxy_server, ("a", a.url))
    found = data_events(stream_raw(proxy))
    assert json.loads(found[-1])["choices"][0]["error"]["message"] == "Network connection lost."  # relayed as it came
    assert "[DONE]" not in found
    assert metric(proxy, "gatewayz_requests_total", outcome="stream_error") == 1
    assert metric(proxy, "gatewayz_upstream_attempts_total", provider="a", result="ok") == 0


# --- a finish reason is a non-empty string --------------------------------------------------------------------------

# Ollama puts `"finish_reason": ""` in every chunk (github.com/ollama/ollama/issues/4357)
OLLAMA_CHUNK = (b'data: {"id":"chatcmpl-693","object":"chat.completion.chunk","created":1715427619,"model":'
                b'"mistral:latest","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant",'
                b'"content":" Hello"},"finish_reason":""}]}\n\n')


def test_a_stream_cut_after_empty_finish_reasons_is_a_cut_not_a_finish(scripted: Any, proxy_server: Any) -> None:
    a = scripted(Reply(pieces=(OLLAMA_CHUNK, OLLAMA_CHUNK)))  # the body ends: no finish, no [DONE]
    proxy = serve(proxy_server, ("a", a.url))
    found = data_events(stream_raw(proxy))
    assert json.loads(found[-1])["error"]["code"] == "stream_broken" and "[DONE]" not in found
    with openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0) as client, pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="gpt-4", messages=MESSAGES, stream=True):
            pass
    assert metric(proxy, "gatewayz_requests_total", outcome="stream_broken") == 2


def test_a_stream_finished_after_empty_finish_reasons_gets_its_done(scripted: Any, proxy_server: Any) -> None:
    last = OLLAMA_CHUNK.replace(b'"finish_reason":""', b'"finish_reason":"stop"').replace(b'" Hello"', b'""')
    a = scripted(Reply(pieces=(OLLAMA_CHUNK, last)))
    proxy = serve(proxy_server, ("a", a.url))
    found = data_events(stream_raw(proxy))
    assert found[-1] == "[DONE]"
    assert metric(proxy, "gatewayz_requests_total", outcome="ok") == 1


# --- usage wherever the provider put it, counted once ---------------------------------------------------------------

# Groq: usage in `x_groq` of the finishing chunk (github.com/vercel/ai/issues/1651)
GROQ_FINAL = event({
    "id": "chatcmpl-8566e76f", "object": "chat.completion.chunk", "created": 1716131679, "model": "llama3-8b-8192",
    "system_fingerprint": "fp_179b0f92c9", "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                                        "finish_reason": "stop"}],
    "x_groq": {"id": "req_01hy8ppkajfqk987jv2vx88m9r", "usage": {
        "queue_time": 0.07535312, "prompt_tokens": 23, "prompt_time": 0.006, "completion_tokens": 19,
        "completion_time": 0.022, "total_tokens": 42, "total_time": 0.028}}})
# Moonshot (Kimi): usage inside the finishing choice (github.com/northes/go-moonshot/issues/17)
MOONSHOT_FINAL = event({
    "id": "cmpl-1305b94c570f447fbde3180560736287", "object": "chat.completion.chunk", "created": 1698999575,
    "model": "moonshot-v1-8k", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop",
                                            "usage": {"prompt_tokens": 19, "completion_tokens": 13,
                                                      "total_tokens": 32}}]})


@pytest.mark.parametrize(
    ("final", "prompt", "completion_tokens"), [(GROQ_FINAL, 23, 19), (MOONSHOT_FINAL, 19, 13)], ids=["groq", "moonshot"]
)
def test_stream_usage_in_a_vendor_field_or_a_choice_is_counted_and_priced(
    scripted: Any, proxy_server: Any, final: bytes, prompt: int, completion_tokens: int
) -> None:
    a = scripted(Reply(pieces=(chunk(role="assistant", content=""), chunk("Hi"), final, DONE)))
    proxy = serve(proxy_server, ("a", a.url), prices={"a": (0.001, 0.002)})
    with openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0) as client:
        text = "".join(c.choices[0].delta.content or "" for c in
                       client.chat.completions.create(model="gpt-4", messages=MESSAGES, stream=True) if c.choices)
    assert text == "Hi"
    assert metric(proxy, "gatewayz_tokens_total", provider="a", kind="prompt") == prompt
    assert metric(proxy, "gatewayz_tokens_total", provider="a", kind="completion") == completion_tokens
    assert metric(proxy, "gatewayz_cost_usd_total", provider="a") == pytest.approx(
        prompt * 0.001 + completion_tokens * 0.002
    )


def test_usage_given_twice_in_one_answer_is_counted_once(scripted: Any, proxy_server: Any) -> None:
    body = completion("hi")  # top-level usage: 3 prompt, 1 completion
    body["choices"][0]["usage"] = dict(body["usage"])
    a = scripted(json_reply(body))
    proxy = serve(proxy_server, ("a", a.url))
    response = httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES})
    assert response.status_code == 200
    assert metric(proxy, "gatewayz_tokens_total", provider="a", kind="prompt") == 3
    assert metric(proxy, "gatewayz_tokens_total", provider="a", kind="completion") == 1


# --- the small ones: a byte-order mark, a JSON answer labelled text/plain --------------------------------------------


def test_a_stream_that_starts_with_a_byte_order_mark_is_served_whole(scripted: Any, proxy_server: Any) -> None:
    # a stream may begin with one U+FEFF (html.spec.whatwg.org, event-stream interpretation); openai-python would
    # read it as part of the first field's name and lose the first event (github.com/openai/openai-python/pull/3819)
    a = scripted(Reply(pieces=(b"\xef\xbb\xbf" + chunk("first "), chunk("second", finish="stop"), DONE)))
    proxy = serve(proxy_server, ("a", a.url))
    assert not stream_raw(proxy).startswith(b"\xef\xbb\xbf")
    with openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0) as client:
        text = "".join(c.choices[0].delta.content or "" for c in
                       client.chat.completions.create(model="gpt-4", messages=MESSAGES, stream=True) if c.choices)
    assert text == "first second"


def test_a_json_answer_labelled_text_plain_reaches_the_client_as_json(scripted: Any, proxy_server: Any) -> None:
    # mistral.rs labels its JSON answers `text/plain; charset=utf-8` (github.com/EricLBuehler/mistral.rs/issues/79)
    a = scripted(Reply(pieces=(json.dumps(completion("labelled")).encode(),), content_type="text/plain; charset=utf-8"))
    proxy = serve(proxy_server, ("a", a.url))
    response = httpx.post(f"{proxy.url}/chat/completions", json={"model": "gpt-4", "messages": MESSAGES})
    assert response.headers["content-type"] == "application/json"
    sent = completion("labelled")
    # the body itself unchanged but for its `model`, which names the canonical model (`answer_model`)
    assert response.content == json.dumps(sent).encode().replace(b'"model": "m"', b'"model": "gpt-4"')
    with openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0) as client:
        assert client.chat.completions.create(model="gpt-4", messages=MESSAGES).choices[0].message.content == "labelled"
