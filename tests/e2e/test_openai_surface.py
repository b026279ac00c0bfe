"""The OpenAI surface beyond chat: models.retrieve, moderations, images, speech, transcriptions, and
the 404/405 hints, driven by the official SDK (sync and async) through the proxy against mock
providers over real sockets, each with a failover (the preferred offer answers 500 or 429 first)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from proxy.mock.answers.media import speech_bytes
from proxy.mock.background import BackgroundServer
from proxy.mock.wire import Exchange
from tests.harness import gateway_config

FIRST = {"x-gatewayz-provider": "flaky"}


@pytest.fixture
def pair(mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]) -> tuple[Any, Any, Any]:
    """A proxy over `flaky` (tried first, answers 500) and `steady`."""
    flaky = mock_provider("flaky", fault="status", status=500)
    steady = mock_provider("steady")
    config = gateway_config(
        [("flaky", flaky.url), ("steady", steady.url)],
        {"gpt-4": ["flaky", "steady"], "whisper-1": ["flaky", "steady"], "omni-moderation-latest": ["flaky", "steady"]},
    )
    return proxy_server(config), flaky, steady


OPENED: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()


def client(proxy: Any) -> openai.OpenAI:
    sdk = openai.OpenAI(base_url=proxy.url, api_key="unused", default_headers=FIRST, max_retries=0)
    OPENED.append(sdk)
    return sdk


def aclient(proxy: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.url, api_key="unused", default_headers=FIRST, max_retries=0)


def test_models_retrieve_canonical_provider_style_and_unknown(pair: tuple[Any, Any, Any]) -> None:
    proxy, _, _ = pair
    sdk = client(proxy)
    assert sdk.models.retrieve("gpt-4").id == "gpt-4"
    assert sdk.models.retrieve("steady/gpt-4").id == "gpt-4"  # an offer's own id; the SDK sends the slash as %2F
    raw = httpx.get(f"{proxy.url}/models/Steady/GPT-4")  # the slash raw, another case
    assert raw.status_code == 200 and raw.json()["id"] == "gpt-4"
    assert httpx.get(f"{proxy.url}/models/openai/gpt-4").status_code == 404  # no offer is listed so
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"
    listed = {m.id for m in sdk.models.list()}
    assert all(sdk.models.retrieve(m).id == m for m in listed)


def test_unknown_route_lists_the_routes_and_wrong_method_names_the_right_one(pair: tuple[Any, Any, Any]) -> None:
    proxy, _, _ = pair
    missing = httpx.post(f"{proxy.url}/assistants", json={})
    assert missing.status_code == 404
    message = missing.json()["error"]["message"]
    assert "/v1/responses" in message and "/v1/audio/transcriptions" in message and "live under /v1" not in message
    wrong = httpx.get(f"{proxy.url}/chat/completions")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST" and "use POST" in wrong.json()["error"]["message"]


def test_moderations_fail_over(pair: tuple[Any, Any, Any]) -> None:
    proxy, flaky, steady = pair
    answer = client(proxy).moderations.with_raw_response.create(
        model="omni-moderation-latest", input=["I will kill the process", "hello"]
    )
    result = answer.parse()
    assert [r.flagged for r in result.results] == [True, False]
    assert answer.headers["x-gatewayz-provider"] == "steady" and answer.headers["x-gatewayz-attempts"] == "2"
    assert flaky.stats()["paths"]["/v1/moderations"] == 1


async def test_images_generate_fail_over_async_with_n_and_response_format(pair: tuple[Any, Any, Any]) -> None:
    proxy, _, steady = pair
    async with aclient(proxy) as sdk:
        answer = await sdk.images.with_raw_response.generate(model="gpt-4", prompt="a cat", n=3, response_format="url")
    images = answer.parse()
    assert len(images.data) == 3 and all(i.url and "/steady/" in i.url for i in images.data)
    assert answer.headers["x-gatewayz-provider"] == "steady"
    assert steady.stats()["recent"][-1]["body"]["model"] == "steady/gpt-4"


def test_speech_bytes_arrive_intact_after_a_failover(pair: tuple[Any, Any, Any]) -> None:
    proxy, _, _ = pair
    with client(proxy).audio.speech.with_streaming_response.create(
        model="gpt-4", voice="alloy", input="hello there", response_format="wav"
    ) as answer:
        assert answer.headers["content-type"] == "audio/wav"
        assert answer.headers["x-gatewayz-provider"] == "steady"
        audio = answer.read()
    assert audio == speech_bytes("steady", "hello there")


async def test_transcription_of_a_few_megabytes_fails_over_with_the_model_rewritten(
    pair: tuple[Any, Any, Any],
) -> None:
    proxy, flaky, steady = pair
    audio = bytes(range(256)) * (3 * 1024 * 1024 // 256) + b"tail"
    async with aclient(proxy) as sdk:
        answer = await sdk.audio.transcriptions.with_raw_response.create(
            model="whisper-1", file=("speech.wav", audio, "audio/wav")
        )
    text = answer.parse().text
    assert f"heard {len(audio)} bytes sha256={hashlib.sha256(audio).hexdigest()} as steady/whisper-1" in text
    assert answer.headers["x-gatewayz-attempts"] == "2"
    assert flaky.stats()["paths"]["/v1/audio/transcriptions"] == 1
    sent = steady.stats()["recent"][-1]["headers"]  # the rewritten form goes out with its exact length
    assert int(sent["content-length"]) > len(audio) and "transfer-encoding" not in sent
    as_text = client(proxy).audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", b"RIFF" * 10, "audio/wav"), response_format="text"
    )
    assert "heard 40 bytes" in str(as_text)
    # the SDK marks translations deprecated (so this suite's warnings-as-errors refuses it): sent by hand
    form = {"model": (None, "whisper-1"), "file": ("speech.wav", b"RIFF" * 10, "audio/wav")}
    translated = httpx.post(f"{proxy.url}/audio/translations", files=form, headers=FIRST)
    assert translated.status_code == 200 and "heard 40 bytes" in translated.json()["text"]
    assert translated.headers["x-gatewayz-provider"] == "steady"


def test_a_form_over_max_body_bytes_is_refused(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    steady = mock_provider("steady")
    proxy = proxy_server(gateway_config([("steady", steady.url)], proxy={"max_body_bytes": 1_000_000}))
    with pytest.raises(openai.APIStatusError) as caught:
        client(proxy).audio.transcriptions.create(model="gpt-4", file=("a.wav", b"x" * 2_000_000, "audio/wav"))
    assert caught.value.status_code == 413
    assert steady.stats()["requests"] == 0


def test_the_mock_honours_tools_n_and_response_format_through_the_proxy(pair: tuple[Any, Any, Any]) -> None:
    proxy, _, _ = pair
    sdk = client(proxy)
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    messages = [{"role": "user", "content": "weather?"}]
    called = sdk.chat.completions.create(model="gpt-4", messages=messages, tools=[tool])  # type: ignore[list-item,arg-type]
    assert called.choices[0].finish_reason == "tool_calls"
    assert called.choices[0].message.tool_calls[0].function.name == "get_weather"  # type: ignore[index,union-attr]
    several = sdk.chat.completions.create(model="gpt-4", messages=messages, n=3)  # type: ignore[arg-type]
    assert [c.index for c in several.choices] == [0, 1, 2]
    shaped = sdk.chat.completions.create(
        model="gpt-4",
        messages=messages,
        response_format={"type": "json_object"},  # type: ignore[arg-type]
    )
    assert shaped.choices[0].message.content == '{"mock":"steady","choice":0}'
    streamed = sdk.chat.completions.create(model="gpt-4", messages=messages, tools=[tool], stream=True)  # type: ignore[list-item,arg-type]
    deltas = [c.choices[0].delta for c in streamed if c.choices]
    arguments = "".join(t.function.arguments or "" for d in deltas for t in d.tool_calls or [] if t.function)
    assert arguments == '{"mock":"steady"}'


async def cut_audio(scope: Any, receive: Any, send: Any) -> None:
    """An upstream whose audio stops after its first 1,000 of a promised 100,000 bytes."""
    if scope["type"] != "http":
        return
    exchange = Exchange(scope["path"], b"", receive, send, [])
    await exchange.start(200, b"audio/mpeg", [(b"content-length", b"100000")])
    await exchange.write(b"ID3" + b"a" * 997)
    await asyncio.sleep(0.2)
    await exchange.drop_connection()


def test_speech_cut_after_its_first_bytes_is_a_cut_download_not_a_short_file(proxy_server: Callable[..., Any]) -> None:
    upstream = BackgroundServer(cut_audio)
    upstream.start()
    try:
        proxy = proxy_server(gateway_config([("cut", f"http://127.0.0.1:{upstream.port}/v1")]))
        sdk = openai.OpenAI(base_url=proxy.url, api_key="unused", max_retries=0)
        OPENED.append(sdk)
        with pytest.raises((openai.APIConnectionError, httpx.HTTPError)):
            sdk.audio.speech.create(model="gpt-4", voice="alloy", input="hello there").read()
    finally:
        upstream.stop()
    exposition = proxy.gateway.metrics.exposition().decode()
    assert 'gatewayz_requests_total{model="gpt-4",outcome="stream_broken",route="/v1/audio/speech"} 1.0' in exposition


def test_bad_input_on_the_new_routes_is_a_clear_400_or_404(pair: tuple[Any, Any, Any]) -> None:
    proxy, flaky, steady = pair
    as_json = httpx.post(f"{proxy.url}/audio/transcriptions", json={"model": "whisper-1"})
    assert as_json.status_code == 400 and "multipart/form-data" in as_json.json()["error"]["message"]
    no_model = httpx.post(f"{proxy.url}/audio/transcriptions", files={"file": ("a.wav", b"RIFF")})
    assert no_model.status_code == 400 and no_model.json()["error"]["param"] == "model"
    broken = httpx.post(f"{proxy.url}/responses", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"]["type"] == "invalid_request_error"
    chained = httpx.post(f"{proxy.url}/responses", json={"model": "gpt-4", "input": "x", "previous_response_id": 7})
    assert chained.status_code == 400 and chained.json()["error"]["param"] == "previous_response_id"
    assert httpx.get(f"{proxy.url}/responses/{'r' * 5000}").json()["error"]["code"] == "response_not_found"
    assert flaky.stats()["requests"] == steady.stats()["requests"] == 0


def test_a_streamed_transcription_is_relayed_as_its_events_after_a_failover(pair: tuple[Any, Any, Any]) -> None:
    proxy, flaky, _ = pair
    stream = client(proxy).audio.transcriptions.create(
        model="whisper-1", file=("a.wav", b"RIFF" * 1000, "audio/wav"), stream=True
    )
    events = list(stream)
    assert [e.type for e in events][-1] == "transcript.text.done" and len(events) > 3
    text = "".join(e.delta for e in events if e.type == "transcript.text.delta")
    assert text.startswith("mock steady heard 4000 bytes") and text == events[-1].text  # type: ignore[union-attr]
    assert flaky.stats()["paths"]["/v1/audio/transcriptions"] == 1
    exposition = proxy.gateway.metrics.exposition().decode()
    assert 'gatewayz_tokens_total{kind="completion",model="whisper-1",provider="steady"}' in exposition


async def empty_lists(scope: Any, receive: Any, send: Any) -> None:
    """A provider that answers 200 with an empty answer: moderations without results, images without data."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    moderation = scope["path"].endswith("/moderations")
    body = b'{"id":"modr-0","model":"m","results":[]}' if moderation else b'{"created":1,"data":[]}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def test_a_200_without_results_or_images_fails_over(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    empty = BackgroundServer(empty_lists)
    empty.start()
    try:
        steady = mock_provider("steady")
        models = {"gpt-4": ["flaky", "steady"], "omni-moderation-latest": ["flaky", "steady"]}
        proxy = proxy_server(
            gateway_config([("flaky", f"http://127.0.0.1:{empty.port}/v1"), ("steady", steady.url)], models)
        )
        sdk = client(proxy)
        moderated = sdk.moderations.with_raw_response.create(model="omni-moderation-latest", input="hello")
        images = sdk.images.with_raw_response.generate(model="gpt-4", prompt="a cat", n=2)
    finally:
        empty.stop()
    assert len(moderated.parse().results) == 1 and moderated.headers["x-gatewayz-provider"] == "steady"
    assert len(images.parse().data) == 2 and images.headers["x-gatewayz-provider"] == "steady"
    assert images.headers["x-gatewayz-attempts"] == "2"
    assert proxy.metric("gatewayz_failovers_total", from_provider="flaky", reason="empty_answer") == 2
