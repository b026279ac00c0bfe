"""The mock provider's fault modes, seen by real clients (httpx, the openai SDK) over real sockets."""

from __future__ import annotations

import email.utils
import itertools
import json
import time
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from proxy.mock.testing import MockProvider, refused_url

MakeMock = Callable[..., MockProvider]
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
CHAT = {"model": "gpt-4", "messages": MESSAGES}
STREAM = {**CHAT, "stream": True}


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as http:
        yield http


def chat(client: httpx.Client, mock: MockProvider, timeout: float = 5) -> httpx.Response:
    return client.post(mock.url + "/chat/completions", json=CHAT, timeout=timeout)


def read_events(client: httpx.Client, mock: MockProvider, received: list[str], timeout: float = 5) -> None:
    """Stream a chat answer, appending each SSE data line to `received` as it arrives."""
    with client.stream("POST", mock.url + "/chat/completions", json=STREAM, timeout=timeout) as response:
        assert response.status_code == 200
        received.extend(line for line in response.iter_lines() if line.startswith("data: "))


def test_down_closes_the_connection_without_an_answer(mock_provider: MakeMock, client: httpx.Client) -> None:
    mock = mock_provider("down", fault="down")
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        chat(client, mock)
    with openai.OpenAI(base_url=mock.url, api_key="k", max_retries=0) as sdk, pytest.raises(
        openai.APIConnectionError
    ):
        sdk.models.list()


def test_refused_url_refuses(client: httpx.Client) -> None:
    for _ in range(2):
        with pytest.raises(httpx.ConnectError):
            client.get(refused_url() + "/models")


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 408, 422, 500, 502, 503, 504, 529])
def test_status_fault_answers_an_openai_error(mock_provider: MakeMock, client: httpx.Client, status: int) -> None:
    mock = mock_provider("broken", fault="status", status=status)
    response = chat(client, mock)
    assert response.status_code == status
    assert response.headers["x-mock-provider"] == "broken"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "broken" in error["message"]
    assert "retry-after" not in response.headers


def test_sdk_sees_the_status_it_expects(mock_provider: MakeMock) -> None:
    mock = mock_provider("sdk", fault="status", status=402)
    with openai.OpenAI(base_url=mock.url, api_key="k", max_retries=0) as sdk, pytest.raises(
        openai.APIStatusError
    ) as caught:
        sdk.chat.completions.create(model="gpt-4", messages=MESSAGES)
    assert caught.value.status_code == 402
    assert caught.value.code == "insufficient_quota"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, {"retry-after": "1"}),
        ({"retry_after": "7"}, {"retry-after": "7"}),
        ({"retry_after": "Wed, 21 Oct 2037 07:28:00 GMT"}, {"retry-after": "Wed, 21 Oct 2037 07:28:00 GMT"}),
        ({"retry_after": "1500ms"}, {"retry-after-ms": "1500"}),
        ({"retry_after_ms": 250}, {"retry-after": "1", "retry-after-ms": "250"}),
        ({"retry_after": ""}, {}),
    ],
)
def test_rate_limit_sends_retry_after(
    mock_provider: MakeMock, client: httpx.Client, settings: dict[str, object], expected: dict[str, str]
) -> None:
    mock = mock_provider("limited", fault="rate_limit", **settings)
    response = chat(client, mock)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    retry = {k: v for k, v in response.headers.items() if k.startswith("retry-after")}
    assert retry == expected


def test_retry_after_as_a_date_from_now(mock_provider: MakeMock, client: httpx.Client) -> None:
    mock = mock_provider("dated", fault="status", status=503, retry_after="date+30")
    response = chat(client, mock)
    assert response.status_code == 503
    when = email.utils.parsedate_to_datetime(response.headers["retry-after"]).timestamp()
    assert 28 <= when - time.time() <= 31


def test_slow_first_byte_delays_the_status_line(mock_provider: MakeMock, client: httpx.Client) -> None:
    mock = mock_provider("slow", fault="slow_first_byte", first_byte_ms=300)
    with pytest.raises(httpx.ReadTimeout):
        chat(client, mock, timeout=0.1)
    began = time.monotonic()
    response = chat(client, mock)
    assert time.monotonic() - began >= 0.3
    assert response.status_code == 200 and response.json()["id"].startswith("chatcmpl-slow-")


def test_latency_delays_every_answer(mock_provider: MakeMock, client: httpx.Client) -> None:
    mock = mock_provider("far", latency_ms=120)
    began = time.monotonic()
    assert client.get(mock.url + "/models").status_code == 200
    assert time.monotonic() - began >= 0.12


def test_stalled_stream_sends_its_first_chunks_then_nothing(mock_provider: MakeMock) -> None:
    mock = mock_provider("staller", fault="stall", after_chunks=2)
    received: list[str] = []
    with (
        openai.OpenAI(base_url=mock.url, api_key="k", max_retries=0, timeout=0.5) as sdk,
        pytest.raises(openai.APITimeoutError),
        sdk.chat.completions.create(model="gpt-4", messages=MESSAGES, stream=True) as stream,
    ):
        received.extend(chunk.choices[0].delta.content or "" for chunk in stream)
    assert received == ["", "staller#1 "]  # the role chunk, one piece, then silence


def test_stalled_plain_request_never_answers(mock_provider: MakeMock, client: httpx.Client) -> None:
    mock = mock_provider("staller", fault="stall")
    with pytest.raises(httpx.ReadTimeout):
        chat(client, mock, timeout=0.3)


def test_cut_stream_closes_without_done(mock_provider: MakeMock, client: httpx.Client) -> None:
    mock = mock_provider("cutter", fault="cut", after_chunks=3, chunks=10)
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
        read_events(client, mock, received)
    assert len(received) == 3
    assert "[DONE]" not in received[-1]


def test_cut_plain_answer_is_half_a_body(mock_provider: MakeMock, client: httpx.Client) -> None:
    mock = mock_provider("cutter", fault="cut")
    with pytest.raises(httpx.RemoteProtocolError):
        chat(client, mock)


def test_garbage_is_not_json(mock_provider: MakeMock, client: httpx.Client) -> None:
    mock = mock_provider("junk", fault="garbage")
    response = chat(client, mock)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    received: list[str] = []
    read_events(client, mock, received)
    with pytest.raises(json.JSONDecodeError):
        json.loads(received[0].removeprefix("data: "))
    assert "data: [DONE]" not in received


def test_fail_rate_spreads_hits_evenly_and_restarts(mock_provider: MakeMock, client: httpx.Client) -> None:
    mock = mock_provider("flaky", fault="status", status=503, fail_rate=0.5)
    assert [chat(client, mock).status_code for _ in range(6)] == [200, 503] * 3
    mock.set_faults(fault="status", status=502, fail_rate=1 / 3)
    assert [chat(client, mock).status_code for _ in range(6)] == [200, 200, 502] * 2
    assert mock.stats()["faults_injected"] == {"status": 5}


def test_seeded_fail_rate_is_reproducible(mock_provider: MakeMock, client: httpx.Client) -> None:
    patterns = []
    for name in ("one", "two"):
        mock = mock_provider(name, fault="status", status=500, fail_rate=0.5, seed=42)
        patterns.append([chat(client, mock).status_code for _ in range(20)])
        mock.reset()
        assert [chat(client, mock).status_code for _ in range(20)] == patterns[-1]
    assert patterns[0] == patterns[1]
    assert 200 in patterns[0] and 500 in patterns[0]


def test_faults_can_target_some_paths(mock_provider: MakeMock, client: httpx.Client) -> None:
    mock = mock_provider("picky", fault="status", status=503, paths=["/v1/chat"])
    assert client.get(mock.url + "/models").status_code == 200
    assert chat(client, mock).status_code == 503


def test_faults_change_at_run_time_over_http(mock_provider: MakeMock, client: httpx.Client) -> None:
    mock = mock_provider("steered", fault="status", status=500)
    faults = mock.root_url + "/_mock/faults"
    assert chat(client, mock).status_code == 500
    answer = client.post(faults, json={"fault": "rate_limit", "retry-after": "3"})
    assert answer.json()["fault"] == "rate_limit"
    assert chat(client, mock).headers["retry-after"] == "3"
    client.post(faults, json={"fault": "none"})
    assert chat(client, mock).status_code == 200
    assert client.delete(faults).json()["fault"] == "status"  # back to how it started
    assert chat(client, mock).status_code == 500
    unknown = client.post(faults, json={"explode": True})
    assert unknown.status_code == 400 and "explode" in unknown.json()["error"]["message"]
    bad = client.post(faults, json={"fail_rate": 2})
    assert bad.status_code == 400 and "fail_rate" in bad.json()["error"]["message"]
    assert client.get(faults).json()["status"] == 500


def test_set_faults_validates_in_the_caller(mock_provider: MakeMock) -> None:
    mock = mock_provider("checked")
    with pytest.raises(ValueError, match="'fault'"):
        mock.set_faults(fault="meltdown")
    with pytest.raises(ValueError, match="unknown fault setting 'latency'"):
        MockProvider("bad", latency=5)


def test_chunks_come_at_the_interval(mock_provider: MakeMock, client: httpx.Client) -> None:
    mock = mock_provider("paced", chunks=4, chunk_interval_ms=60)
    arrivals: list[float] = []
    with client.stream("POST", mock.url + "/chat/completions", json=STREAM) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic())
    assert len(arrivals) == 1 + 4 + 1 + 1
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert min(gaps) >= 0.045


def test_a_client_leaving_mid_stream_is_recorded_at_once(mock_provider: MakeMock, client: httpx.Client) -> None:
    mock = mock_provider("watched", chunks=1000, chunk_interval_ms=20)
    seen = 0
    with client.stream("POST", mock.url + "/chat/completions", json=STREAM) as response:
        for line in response.iter_lines():
            seen += line.startswith("data: ")
            if seen == 3:
                left_at = time.monotonic()
                break  # leaving the block closes the connection
    (disconnect,) = mock.wait_for_disconnects(1)["disconnect_log"]
    assert disconnect["path"] == "/v1/chat/completions"
    assert 0 <= disconnect["at_monotonic"] - left_at < 0.5
    assert 3 <= disconnect["events_sent"] < 1000


def test_connections_the_mock_drops_are_not_client_disconnects(
    mock_provider: MakeMock, client: httpx.Client
) -> None:
    mock = mock_provider("dropper", fault="down")
    with pytest.raises(httpx.RemoteProtocolError):
        chat(client, mock)
    mock.set_faults(fault="cut")
    with pytest.raises(httpx.RemoteProtocolError):
        read_events(client, mock, [])
    assert mock.stats()["disconnects"] == 0
