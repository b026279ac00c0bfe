"""Streaming end to end over real sockets: pass-through chunk by chunk, and every way a stream ends."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import openai

from proxy.mock.testing import MockProvider
from tests.harness import ProxyServer, gateway_config

BODY = {"model": "gpt-4", "messages": [{"role": "user", "content": "hello"}], "stream": True}


def events(raw: bytes) -> list[str]:
    return [line[len("data: "):] for line in raw.decode().split("\n") if line.startswith("data: ")]


def one_provider(mock_provider: Any, proxy_server: Any, proxy: dict[str, Any] | None = None, **faults: Any) -> tuple[
    MockProvider, ProxyServer
]:
    mock = mock_provider("a", **faults)
    return mock, proxy_server(gateway_config([("a", mock.url)], proxy=proxy))


def test_stream_arrives_in_order_and_ends_with_done(mock_provider: Any, proxy_server: Any) -> None:
    _, proxy = one_provider(mock_provider, proxy_server, chunks=8)
    sdk = openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0)
    stream = sdk.chat.completions.create(model="gpt-4", messages=BODY["messages"], stream=True)
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert pieces == [f"a#{i} " for i in range(1, 9)]
    raw = httpx.post(f"{proxy.url}/chat/completions", json=BODY)
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-gatewayz-provider"] == "a"
    assert events(raw.content)[-1] == "[DONE]"
    assert all(json.loads(e)["model"] == "gpt-4" for e in events(raw.content)[:-1])  # the canonical model, not a/gpt-4


def test_chunks_are_relayed_as_they_come_not_buffered(mock_provider: Any, proxy_server: Any) -> None:
    _, proxy = one_provider(mock_provider, proxy_server, chunks=5, chunk_interval_ms=200)
    arrivals = []
    started = time.perf_counter()
    with httpx.stream("POST", f"{proxy.url}/chat/completions", json=BODY, timeout=10) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.perf_counter() - started)
    total = arrivals[-1]
    assert total >= 0.8
    assert arrivals[1] < total - 0.5  # the first content chunk came long before the end


def test_cut_after_commit_ends_with_an_error_event_and_no_done(mock_provider: Any, proxy_server: Any) -> None:
    _, proxy = one_provider(mock_provider, proxy_server, fault="cut", after_chunks=3)
    raw = httpx.post(f"{proxy.url}/chat/completions", json=BODY, timeout=10)
    assert raw.status_code == 200
    found = events(raw.content)
    assert "[DONE]" not in found
    error = json.loads(found[-1])["error"]
    assert error["code"] in {"stream_broken"}
    assert len(found) == 4  # three relayed events, then the error


def test_stalled_stream_is_ended_by_the_idle_timeout(mock_provider: Any, proxy_server: Any) -> None:
    _, proxy = one_provider(
        mock_provider, proxy_server, proxy={"stream_idle_timeout_s": 0.5}, fault="stall", after_chunks=2
    )
    started = time.perf_counter()
    raw = httpx.post(f"{proxy.url}/chat/completions", json=BODY, timeout=10)
    elapsed = time.perf_counter() - started
    found = events(raw.content)
    assert json.loads(found[-1])["error"]["code"] == "stream_idle_timeout"
    assert "[DONE]" not in found
    assert 0.5 <= elapsed < 3.0


def test_openai_sdk_sees_the_error_event_as_an_error(mock_provider: Any, proxy_server: Any) -> None:
    _, proxy = one_provider(mock_provider, proxy_server, fault="cut", after_chunks=2)
    sdk = openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0)
    stream = sdk.chat.completions.create(model="gpt-4", messages=BODY["messages"], stream=True)
    try:
        for _ in stream:
            pass
    except openai.APIError as exc:
        assert "dropped" in str(exc) or "ended" in str(exc)
    else:
        raise AssertionError("a cut stream must not look like a complete one")


def raw_request(body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def test_client_disconnect_reaches_the_provider_within_a_second(mock_provider: Any, proxy_server: Any) -> None:
    mock, proxy = one_provider(mock_provider, proxy_server, chunks=100, chunk_interval_ms=100)
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(raw_request(BODY))
        assert b"200" in sock.recv(65536)  # committed and streaming
        left_at = time.time()
    stats = mock.wait_for_disconnects(1, timeout=2.0)
    assert stats["disconnect_log"][-1]["at"] - left_at < 1.0


def test_client_disconnect_while_waiting_for_first_byte(mock_provider: Any, proxy_server: Any) -> None:
    mock, proxy = one_provider(mock_provider, proxy_server, fault="slow_first_byte", first_byte_ms=4000)
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(raw_request({**BODY, "stream": False}))
        time.sleep(0.3)
        left_at = time.time()
    stats = mock.wait_for_disconnects(1, timeout=2.0)
    assert stats["disconnect_log"][-1]["at"] - left_at < 1.0


def test_usage_from_the_final_chunk_counts_tokens_and_cost(mock_provider: Any, proxy_server: Any) -> None:
    mock = mock_provider("a")
    config = gateway_config([("a", mock.url)], prices={"a": (0.001, 0.002)})
    proxy = proxy_server(config)
    body = {**BODY, "stream_options": {"include_usage": True}}
    raw = httpx.post(f"{proxy.url}/chat/completions", json=body)
    usage = next(json.loads(e)["usage"] for e in events(raw.content)[:-1] if json.loads(e).get("usage"))
    metrics = httpx.get(f"{proxy.base}/metrics").text
    prompt = f'gatewayz_tokens_total{{kind="prompt",model="gpt-4",provider="a"}} {float(usage["prompt_tokens"])}'
    assert prompt in metrics
    cost = usage["prompt_tokens"] * 0.001 + usage["completion_tokens"] * 0.002
    line = next(x for x in metrics.splitlines() if x.startswith("gatewayz_cost_usd_total{"))
    assert abs(float(line.split()[-1]) - cost) < 1e-9
