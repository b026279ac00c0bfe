"""The mock provider speaks OpenAI over real sockets: endpoints, listings, stats, the helper, the CLI.

Fault modes are in test_mock_provider_faults.py.
"""

from __future__ import annotations

import base64
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from proxy.mock.testing import MockProvider, free_port

MakeMock = Callable[..., MockProvider]
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "say hello please"}]


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as http:
        yield http


def sdk(mock: MockProvider, api_key: str = "sk-test") -> openai.OpenAI:
    return openai.OpenAI(base_url=mock.url, api_key=api_key, max_retries=0)


def sse_events(response: httpx.Response) -> list[str]:
    return [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]


def test_chat_completion_names_the_mock_and_echoes_the_model(mock_provider: MakeMock) -> None:
    mock = mock_provider("alpha")
    with sdk(mock) as client:
        raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4", messages=MESSAGES)
    completion = raw.parse()
    assert raw.headers["x-mock-provider"] == "alpha"
    assert completion.id.startswith("chatcmpl-alpha-")
    assert completion.model == "openai/gpt-4"
    assert completion.choices[0].message.content == "alpha#1 alpha#2 alpha#3 alpha#4 alpha#5 "
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 5)


def test_chat_stream_with_usage_through_the_sdk(mock_provider: MakeMock) -> None:
    mock = mock_provider("beta", chunks=3)
    with sdk(mock) as client, client.chat.completions.create(
        model="gpt-4", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ) as stream:
        chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert pieces == ["beta#1 ", "beta#2 ", "beta#3 "]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("chatcmpl-beta-")


def test_raw_stream_ends_with_done_and_has_no_usage_unless_asked(
    mock_provider: MakeMock, client: httpx.Client
) -> None:
    mock = mock_provider("gamma", chunks=2)
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    with client.stream("POST", mock.url + "/chat/completions", json=body) as response:
        events = sse_events(response)
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["x-mock-provider"] == "gamma"
    assert len(events) == 1 + 2 + 1 + 1  # role, two pieces, finish, [DONE]
    assert events[-1] == "[DONE]"
    assert all('"usage"' not in event for event in events)


def test_completions_plain_and_streamed(mock_provider: MakeMock) -> None:
    mock = mock_provider("delta", chunks=2)
    with sdk(mock) as client:
        completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="once upon")
        with client.completions.create(model="x", prompt="a", stream=True) as stream:
            texts = [chunk.choices[0].text for chunk in stream if chunk.choices]
    assert completion.id.startswith("cmpl-delta-")
    assert completion.model == "gpt-3.5-turbo-instruct"
    assert completion.choices[0].text == "delta#1 delta#2 "
    assert "".join(texts) == "delta#1 delta#2 "


def test_embeddings_are_deterministic_in_both_encodings(mock_provider: MakeMock) -> None:
    mock = mock_provider("emb")
    with sdk(mock) as client:
        floats = client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"], dimensions=4)
        packed = client.embeddings.create(model="e", input="a b", dimensions=4, encoding_format="base64")
        again = client.embeddings.create(model="e", input="a b", dimensions=4)
    assert [e.index for e in floats.data] == [0, 1]
    assert len(floats.data[0].embedding) == 4
    assert floats.data[0].embedding == again.data[0].embedding != floats.data[1].embedding
    decoded = struct.unpack("<4f", base64.b64decode(str(packed.data[0].embedding)))
    assert list(decoded) == floats.data[0].embedding
    assert floats.usage.prompt_tokens == 3


def test_openai_listing(mock_provider: MakeMock) -> None:
    mock = mock_provider("lister", models=["m-1", "m-2"])
    with sdk(mock) as client:
        listed = list(client.models.list())
    assert [m.id for m in listed] == ["m-1", "m-2"]
    assert {m.object for m in listed} == {"model"}


def test_openrouter_listing_has_prices_per_token_as_strings(
    mock_provider: MakeMock, client: httpx.Client
) -> None:
    mock = mock_provider("or", listing="openrouter", models=["openai/gpt-4"], context_length=32768)
    body = client.get(mock.url + "/models").json()
    assert body["object"] == "list"
    (entry,) = body["data"]
    assert entry["id"] == "openai/gpt-4" and entry["object"] == "model"
    assert entry["pricing"] == {"prompt": "0.00003", "completion": "0.00006"}
    assert entry["context_length"] == 32768
    assert entry["name"]


@pytest.mark.parametrize(
    "case",
    [
        ("POST", "/chat/completions", b"{not json", 400),
        ("POST", "/chat/completions", b'{"messages": []}', 400),
        ("POST", "/embeddings", b'{"model": "e"}', 400),
        ("GET", "/chat/completions", b"", 405),
        ("GET", "/nowhere", b"", 404),
    ],
)
def test_bad_requests_get_openai_shaped_errors(
    mock_provider: MakeMock, client: httpx.Client, case: tuple[str, str, bytes, int]
) -> None:
    method, path, content, status = case
    mock = mock_provider("strict")
    response = client.request(method, mock.url + path, content=content)
    assert response.status_code == status
    assert set(response.json()["error"]) >= {"message", "type", "code"}


def test_api_key_and_strict_models(mock_provider: MakeMock) -> None:
    mock = mock_provider("keyed", api_key="sk-right", strict_models=True, models=["gpt-4"])
    with sdk(mock, "sk-wrong") as client, pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4", messages=MESSAGES)
    with sdk(mock, "sk-right") as client:
        assert client.chat.completions.create(model="gpt-4", messages=MESSAGES).model == "gpt-4"
        with pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(model="gpt-5", messages=MESSAGES)
    assert caught.value.code == "model_not_found"


def test_stats_show_what_the_provider_received(mock_provider: MakeMock, client: httpx.Client) -> None:
    mock = mock_provider("seen", history=2)
    for model in ("a", "b", "c"):
        client.post(
            mock.url + "/chat/completions",
            json={"model": model, "messages": MESSAGES},
            headers={"Authorization": "Bearer sk-provider-key"},
        )
    client.get(mock.url + "/models")
    stats = client.get(mock.root_url + "/_mock/stats").json()
    assert stats["name"] == "seen"
    assert stats["paths"] == {"/v1/chat/completions": 3, "/v1/models": 1}
    assert stats["requests"] == 4
    last_post = stats["recent"][0]
    assert len(stats["recent"]) == 2
    assert last_post["headers"]["authorization"] == "Bearer sk-provider-key"
    assert last_post["body"]["model"] == "c" and last_post["method"] == "POST"
    assert client.delete(mock.root_url + "/_mock/stats").json()["requests"] == 0
    assert mock.stats()["paths"] == {}  # control requests are not counted


def test_start_and_stop_are_quick_and_leave_no_thread(client: httpx.Client) -> None:
    threads_before = set(threading.enumerate())
    began = time.monotonic()
    mock = MockProvider("quick", fault="stall").start()
    started = time.monotonic()
    assert client.get(mock.url.replace("/v1", "/_mock/faults")).json()["fault"] == "stall"
    stalled = threading.Thread(target=_expect_dropped, args=(mock.url,))
    stalled.start()
    mock.wait_for_requests(1)
    stopping = time.monotonic()
    mock.stop()
    stopped = time.monotonic()
    stalled.join(2)
    assert started - began < 0.3
    assert stopped - stopping < 0.3
    assert set(threading.enumerate()) == threads_before
    mock.stop()  # twice is fine


def _expect_dropped(url: str) -> None:
    with pytest.raises(httpx.RemoteProtocolError), httpx.Client(timeout=5) as http:
        http.post(url + "/chat/completions", json={"model": "m", "messages": MESSAGES})


def test_a_provider_comes_back_on_the_same_port(client: httpx.Client) -> None:
    with MockProvider("first") as first:
        port = first.port
    with pytest.raises(httpx.ConnectError):
        client.get(first.url + "/models")
    with MockProvider("second", port=port) as second:
        assert client.get(second.url + "/models").headers["x-mock-provider"] == "second"


def test_cli_serves_until_terminated(client: httpx.Client) -> None:
    port = free_port()
    failover = Path(sys.executable).parent / "failover"
    args = ["mock-provider", "--port", str(port), "--name", "cli", "--listing", "openrouter"]
    args += ["--fault", "status", "--status", "503", "--fail-rate", "0.5", "--models", "x/y, z"]
    process = subprocess.Popen([failover, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        listing = _poll(client, f"http://127.0.0.1:{port}/v1/models", deadline=time.monotonic() + 10)
        assert listing.headers["x-mock-provider"] == "cli"
        assert [m["id"] for m in listing.json()["data"]] == ["x/y", "z"]
        assert listing.json()["data"][0]["pricing"]["prompt"] == "0.00003"
        second = client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "z", "messages": []})
        assert second.status_code == 503  # --fail-rate 0.5: requests 2, 4, ...
    finally:
        os.kill(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down
    assert b"mock provider 'cli'" in stderr


def _poll(client: httpx.Client, url: str, deadline: float) -> httpx.Response:
    while True:
        try:
            return client.get(url)
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_cli_rejects_an_unknown_fault() -> None:
    failover = Path(sys.executable).parent / "failover"
    done = subprocess.run(
        [failover, "mock-provider", "--port", "1", "--fault", "exploding"], capture_output=True, timeout=30, check=False
    )
    assert done.returncode == 2
    assert b"exploding" in done.stderr
