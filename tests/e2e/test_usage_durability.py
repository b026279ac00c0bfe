"""Usage records survive the process's end: SIGTERM and SIGHUP flush, kill -9 loses at most one flush interval.

`failover serve` as a real process over a fresh database of the shared Postgres, a mock provider on
loopback, plain HTTP requests. The kill -9 case measures the loss bound: which records of the requests
answered before the kill are missing, and how long before the kill those requests were answered.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from proxy.mock.testing import free_port

CONFIG = """
[usage]
flush_s = {flush_s}
[[providers]]
slug = "good"
name = "Good"
base_url = "{url}"
listing = "none"
[[models]]
model_id = "solo"
offers = [{{ provider = "good", provider_model_id = "good/solo", pricing_prompt = 0.0000123, pricing_completion = 0.0000456 }}]
"""
CHAT = {"model": "solo", "messages": [{"role": "user", "content": "hi"}]}
WRITE_SLACK_S = 0.5  # what one batch write may take on a loaded test machine


class Serve:
    def __init__(self, tmp_path: Path, url: str, database_url: str, flush_s: float) -> None:
        config = tmp_path / "failover.toml"
        config.write_text(CONFIG.format(url=url, flush_s=flush_s))
        self.port = free_port()
        self.log = tmp_path / "serve.log"
        env = {**os.environ, "DATABASE_URL": database_url, "FAILOVER_DATA_DIR": str(tmp_path / "data")}
        env.pop("REDIS_URL", None)
        with self.log.open("wb") as out:
            self.child = subprocess.Popen(
                [sys.executable, "-m", "proxy.cli", "--config", str(config), "serve", "--port", str(self.port)],
                env=env, stdout=subprocess.DEVNULL, stderr=out,
            )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            assert self.child.poll() is None and time.monotonic() < deadline, self.log.read_text()
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).json()["database"] == "ok":
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)

    def ask(self) -> str:
        answer = httpx.post(f"{self.base}/v1/chat/completions", json=CHAT, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.headers["x-request-id"]

    def stop(self) -> None:
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
            self.child.wait(timeout=20)


async def stored(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        return {row["request_id"] for row in await conn.fetch("SELECT request_id FROM usage_records")}
    finally:
        await conn.close()


async def test_sigterm_flushes_the_pending_records(tmp_path: Path, fresh_database_url: str, mock_provider: Any) -> None:
    serve = Serve(tmp_path, mock_provider("good").url, fresh_database_url, flush_s=60)
    try:
        sent = {serve.ask() for _ in range(5)}
        assert not sent & await stored(fresh_database_url)  # a minute's flush interval: nothing written yet
    finally:
        serve.stop()
    assert serve.child.returncode == 0, serve.log.read_text()
    assert await stored(fresh_database_url) == sent


async def test_sighup_flushes_the_pending_records(tmp_path: Path, fresh_database_url: str, mock_provider: Any) -> None:
    serve = Serve(tmp_path, mock_provider("good").url, fresh_database_url, flush_s=60)
    try:
        sent = {serve.ask() for _ in range(3)}
        serve.child.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while await stored(fresh_database_url) != sent:
            assert time.monotonic() < deadline, serve.log.read_text()
            time.sleep(0.05)
    finally:
        serve.stop()


async def test_kill_9_loses_at_most_one_flush_interval(
    tmp_path: Path, fresh_database_url: str, mock_provider: Any
) -> None:
    flush_s = 0.5
    serve = Serve(tmp_path, mock_provider("good").url, fresh_database_url, flush_s=flush_s)
    answered: list[tuple[str, float]] = []
    try:
        started = time.monotonic()
        while time.monotonic() - started < 3.0:  # a steady trickle, ~50 requests a second
            answered.append((serve.ask(), time.monotonic()))
            time.sleep(0.02)
        serve.child.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        serve.child.wait(timeout=10)
    finally:
        serve.stop()
    kept = await stored(fresh_database_url)
    lost_ages = [killed_at - at for ident, at in answered if ident not in kept]
    assert kept <= {ident for ident, _ in answered}
    oldest = max(lost_ages, default=0.0)
    print(f"kill -9 after {len(answered)} requests: {len(lost_ages)} records lost, the oldest answered "
          f"{oldest * 1000:.0f} ms before the kill (flush_s = {flush_s})")  # fmt: skip
    assert oldest <= flush_s + WRITE_SLACK_S, lost_ages
    assert len(kept) >= len(answered) - len(lost_ages)
