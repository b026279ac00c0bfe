"""A way back after a blip: a preferred provider that failed for 3 s serves again within seconds of
recovering, not when this instance's memory of its failures ages out (a minute).

A real `failover serve` over a real catalog in which the health worker has marked both providers
healthy (so the healthy peer outranks the preferred one as soon as this instance ranks it down), a
client sending a steady stream of requests, and the preferred provider answering 500 for 3 s.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from proxy.mock.testing import free_port

CONFIG = """
[[providers]]
slug = "primary"
name = "Primary"
base_url = "{primary}"
listing = "none"
[[providers]]
slug = "second"
name = "Second"
base_url = "{second}"
listing = "none"
priority = 1
[[models]]
model_id = "gpt-4"
offers = [{{ provider = "primary", provider_model_id = "gpt-4" }}, {{ provider = "second", provider_model_id = "gpt-4" }}]
"""
OUTAGE_S = 3.0
PATIENCE_S = 20.0  # today's code needs about 60 s: the test gives up long before
BODY = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}


def failover(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "proxy.cli", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def mark_healthy(url: str) -> None:
    """What the health worker writes after a few good probes of every offer."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("UPDATE models SET health_status = 'healthy'")
        await conn.execute("UPDATE providers SET health_status = 'healthy'")
    finally:
        await conn.close()


def test_a_preferred_provider_that_blipped_for_3_s_is_back_within_seconds(
    tmp_path: Path, fresh_database_url: str, mock_provider: Any
) -> None:
    primary, second = mock_provider("primary"), mock_provider("second")
    config = tmp_path / "failover.toml"
    config.write_text(CONFIG.format(primary=primary.url, second=second.url))
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    env.update(DATABASE_URL=fresh_database_url, FAILOVER_CONFIG=str(config), FAILOVER_DATA_DIR=str(tmp_path / "data"))
    failover(env, "migrate")
    failover(env, "sync")
    asyncio.run(mark_healthy(fresh_database_url))
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    served: list[tuple[float, str]] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", timeout=10) as client:
            while not stop.is_set():
                answer = client.post("/chat/completions", json=BODY)
                served.append((time.monotonic(), answer.headers.get("x-gatewayz-provider", str(answer.status_code))))
                time.sleep(0.05)  # about 20 requests a second

    try:
        deadline = time.monotonic() + 20
        while True:
            assert serve.poll() is None and time.monotonic() < deadline
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).json()
                if ready["catalog"]["source"] == "postgres":
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        client = threading.Thread(target=traffic)
        client.start()
        time.sleep(1.0)
        primary.set_faults(fault="status", status=500)
        time.sleep(OUTAGE_S)
        primary.reset()
        recovered = time.monotonic()
        while time.monotonic() - recovered < PATIENCE_S:
            if any(at > recovered and who == "primary" for at, who in served):
                break
            time.sleep(0.05)
    finally:
        stop.set()
        serve.terminate()
        serve.wait(timeout=15)
    back = [at for at, who in served if at > recovered and who == "primary"]
    assert back, f"the primary served nothing within {PATIENCE_S:g} s of recovering"
    took = back[0] - recovered
    during = [who for at, who in served if recovered - OUTAGE_S + 0.5 < at < recovered]
    assert set(during) == {"second"}  # nothing was lost during the outage: the peer served
    assert took < 6.0, took
    print(f"\nafter a {OUTAGE_S:g} s outage the primary served again {took:.1f} s after it recovered")
