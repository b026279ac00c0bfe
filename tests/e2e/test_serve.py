"""`failover serve` as a real process: it serves, and SIGTERM lets in-flight requests finish."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.mock.background import BackgroundServer
from proxy.mock.testing import free_port
from proxy.mock.wire import Exchange

CONFIG = """
[proxy]
shutdown_grace_s = 10
[[providers]]
slug = "slow"
name = "Slow"
base_url = "{url}"
listing = "none"
[[models]]
model_id = "gpt-4"
offers = [{{ provider = "slow", provider_model_id = "gpt-4" }}]
"""


def wait_ready(port: int, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("serve did not become ready")


def test_sigterm_lets_in_flight_requests_finish(mock_provider: Any, fresh_database_url: str, tmp_path: Path) -> None:
    slow = mock_provider("slow", latency_ms=1500)
    config = tmp_path / "failover.toml"
    config.write_text(CONFIG.format(url=slow.url))
    port = free_port()
    env = {**os.environ, "FAILOVER_CONFIG": str(config), "DATABASE_URL": fresh_database_url}
    child = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    with child:
        try:
            exercise(port, child, slow)
        finally:
            if child.poll() is None:
                child.kill()


def exercise(port: int, child: subprocess.Popen[bytes], slow: Any) -> None:
    wait_ready(port, child)
    results: list[int] = []

    def call() -> None:
        body = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}
        results.append(httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=10).status_code)

    caller = threading.Thread(target=call)
    caller.start()
    slow.wait_for_requests(1, timeout=5)
    child.send_signal(signal.SIGTERM)
    caller.join(timeout=10)
    assert results == [200]
    assert child.wait(timeout=10) in (0, -signal.SIGTERM)
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        raise AssertionError("still accepting connections after SIGTERM")
    except httpx.TransportError:
        pass


def test_several_workers_share_one_metrics_view(mock_provider: Any, fresh_database_url: str, tmp_path: Path) -> None:
    upstream = mock_provider("slow")
    config = tmp_path / "failover.toml"
    config.write_text(CONFIG.format(url=upstream.url))
    port = free_port()
    env = {**os.environ, "FAILOVER_CONFIG": str(config), "DATABASE_URL": fresh_database_url}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    with child:
        try:
            wait_ready(port, child)
            body = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}
            with httpx.Client() as client:
                for _ in range(20):  # new connections, spread over both workers by the kernel
                    assert httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body).status_code == 200
                text = client.get(f"http://127.0.0.1:{port}/metrics").text
            line = next(x for x in text.splitlines() if x.startswith("gatewayz_requests_total{"))
            assert line.endswith(" 20.0"), line
        finally:
            child.terminate()
            child.wait(timeout=15)
        log = child.stderr.read().decode() if child.stderr else ""
    assert log.count('"route":"/v1/chat/completions"') == 20  # every worker writes its access lines


STREAM_CONFIG = """
[proxy]
shutdown_grace_s = 1
[[providers]]
slug = "slow"
name = "Slow"
base_url = "{url}"
listing = "none"
[[models]]
model_id = "gpt-4"
offers = [{{ provider = "slow", provider_model_id = "gpt-4" }}]
"""


def test_a_stream_longer_than_the_grace_period_ends_with_the_error_event(
    mock_provider: Any, fresh_database_url: str, tmp_path: Path
) -> None:
    slow = mock_provider("slow", chunk_interval_ms=300, chunks=60)  # about 18 s of stream
    config = tmp_path / "failover.toml"
    config.write_text(STREAM_CONFIG.format(url=slow.url))
    port = free_port()
    env = {**os.environ, "FAILOVER_CONFIG": str(config), "DATABASE_URL": fresh_database_url}
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "serve", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=log_file,
        )  # fmt: skip
        try:
            wait_ready(port, child)
            lines = []
            body = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            with httpx.stream("POST", url, json=body, timeout=30) as response:
                for line in response.iter_lines():  # an incomplete chunked read would raise here
                    lines.append(line)
                    if len(lines) == 1:
                        child.send_signal(signal.SIGTERM)
            assert child.wait(timeout=20) in (0, -signal.SIGTERM)
        finally:
            if child.poll() is None:
                child.kill()
    events = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    assert "[DONE]" not in events and len(events) < 50
    assert json.loads(events[-1])["error"]["code"] == "proxy_shutdown"
    log = log_path.read_text()
    assert "Traceback" not in log, log
    (access,) = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert (access["status"], access["outcome"], access["provider"]) == (200, "proxy_shutdown", "slow")
    assert len([line for line in log.splitlines() if not line.startswith("{") and "listening on" not in line]) == 1, log


async def slow_audio(scope: Any, receive: Any, send: Any) -> None:
    """An upstream whose speech sends its first 1,000 of a promised 100,000 bytes, then nothing for a minute."""
    if scope["type"] != "http":
        return
    exchange = Exchange(scope["path"], b"", receive, send, [])
    await exchange.start(200, b"audio/mpeg", [(b"content-length", b"100000")])
    await exchange.write(b"ID3" + b"a" * 997)
    await asyncio.sleep(60)


def test_speech_under_way_past_the_grace_period_is_cut_not_answered_twice(
    fresh_database_url: str, tmp_path: Path
) -> None:
    upstream = BackgroundServer(slow_audio)
    upstream.start()
    config = tmp_path / "failover.toml"
    config.write_text(STREAM_CONFIG.format(url=f"http://127.0.0.1:{upstream.port}/v1"))
    port = free_port()
    env = {**os.environ, "FAILOVER_CONFIG": str(config), "DATABASE_URL": fresh_database_url}
    log_path = tmp_path / "serve.log"
    received = bytearray()
    try:
        with log_path.open("wb") as log_file:
            child = subprocess.Popen(
                [sys.executable, "-m", "proxy.cli", "serve", "--port", str(port)],
                env=env, stdout=subprocess.DEVNULL, stderr=log_file,
            )  # fmt: skip
            try:
                wait_ready(port, child)
                body = {"model": "gpt-4", "input": "hello", "voice": "alloy"}
                url = f"http://127.0.0.1:{port}/v1/audio/speech"
                with pytest.raises(httpx.RemoteProtocolError), httpx.stream("POST", url, json=body, timeout=30) as r:
                    for piece in r.iter_raw():
                        received += piece
                        child.send_signal(signal.SIGTERM)
                assert child.wait(timeout=20) in (0, -signal.SIGTERM)
            finally:
                if child.poll() is None:
                    child.kill()
    finally:
        upstream.stop()
    assert bytes(received) == b"ID3" + b"a" * 997  # the download is cut short, with no error text in the audio
    log = log_path.read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log
    (access,) = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert (access["status"], access["outcome"], access["route"]) == (200, "proxy_shutdown", "/v1/audio/speech")


SHARED_CONFIG = """
[[providers]]
slug = "limited"
name = "Limited"
base_url = "{limited}"
listing = "none"
[[providers]]
slug = "other"
name = "Other"
base_url = "{other}"
listing = "none"
priority = 1
[[models]]
model_id = "gpt-4"
offers = [{{ provider = "limited", provider_model_id = "gpt-4" }}, {{ provider = "other", provider_model_id = "gpt-4" }}]
"""


def test_workers_without_redis_share_a_cooldown(mock_provider: Any, fresh_database_url: str, tmp_path: Path) -> None:
    limited, other = mock_provider("limited", fault="rate_limit", retry_after="30"), mock_provider("other")
    config = tmp_path / "failover.toml"
    config.write_text(SHARED_CONFIG.format(limited=limited.url, other=other.url))
    port = free_port()
    env = {**os.environ, "FAILOVER_CONFIG": str(config), "DATABASE_URL": fresh_database_url}
    env.pop("REDIS_URL", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    with child:
        try:
            wait_ready(port, child)
            time.sleep(1.0)  # both workers listening
            body = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}
            providers = []
            for _ in range(12):  # new connections, spread over both workers by the kernel
                response = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=10)
                providers.append(response.headers["x-gatewayz-provider"])
                time.sleep(0.1)
        finally:
            child.terminate()
            child.wait(timeout=15)
    assert providers == ["other"] * 12
    assert limited.stats()["requests"] == 1  # one 429 with Retry-After: 30 cooled the offer for every worker
