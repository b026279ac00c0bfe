"""`kill -HUP` reloads the config of a running `failover serve`, one worker or several: a trickle of
requests loses none, the change applies, and what needs a restart is logged as such."""

from __future__ import annotations

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

from proxy.config import config_from_mapping
from proxy.http.reload import live_config, restart_only_changes
from proxy.mock.testing import free_port
from tests.e2e.test_serve import wait_ready

CONFIG = """
[proxy]
port = {port}
max_attempts = {max_attempts}
[[providers]]
slug = "a"
name = "A"
base_url = "{a}"
listing = "none"
priority = {a_priority}
[[providers]]
slug = "b"
name = "B"
base_url = "{b}"
listing = "none"
priority = 1
[[models]]
model_id = "gpt-4"
offers = [{{ provider = "a", provider_model_id = "gpt-4" }}, {{ provider = "b", provider_model_id = "gpt-4" }}]
"""
BODY = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}


class Trickle:
    """One request every 20 ms on fresh connections (spread over the workers), each outcome kept."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/v1/chat/completions"
        self.outcomes: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = httpx.post(self.url, json=BODY, timeout=10)
                outcome = response.headers.get("x-gatewayz-provider", f"status {response.status_code}")
            except httpx.HTTPError as exc:
                outcome = f"error {exc!r}"
            self.outcomes.append(outcome)
            time.sleep(0.02)

    def __enter__(self) -> Trickle:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_applies_the_config_without_losing_a_request(
    workers: int, mock_provider: Any, fresh_database_url: str, tmp_path: Path
) -> None:
    urls = {"a": mock_provider("a").url, "b": mock_provider("b").url}
    port = free_port()
    config = tmp_path / "failover.toml"
    config.write_text(CONFIG.format(port=port, max_attempts=3, a_priority=0, **urls))
    env = {**os.environ, "FAILOVER_CONFIG": str(config), "DATABASE_URL": fresh_database_url}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("REDIS_URL", None)
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "serve", "--workers", str(workers)],
            env=env, stdout=subprocess.DEVNULL, stderr=log_file,
        )  # fmt: skip
        try:
            wait_ready(port, child)
            with Trickle(port) as trickle:
                time.sleep(0.5)
                config.write_text(CONFIG.format(port=free_port(), max_attempts=2, a_priority=2, **urls))
                child.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + 15
                while trickle.outcomes[-20:] != ["b"] * 20 and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(0.3)
            assert child.poll() is None, "serve exited on SIGHUP"
        finally:
            child.terminate()
            child.wait(timeout=15)
    log = log_path.read_text()
    outcomes = trickle.outcomes
    assert set(outcomes) == {"a", "b"} and outcomes[0] == "a" and outcomes[-20:] == ["b"] * 20, outcomes
    reloads = [line for line in log.splitlines() if "config reloaded from" in line]
    assert len(reloads) == workers, log
    for line in reloads:
        assert "max_attempts (3 -> 2)" in line and "provider a priority (0 -> 2)" in line  # no catalog: applied
        assert "waits for `failover sync`" not in line
        assert f"needs a restart to take effect: port ({port} -> " in line


def test_a_reload_keeps_what_cannot_change_live() -> None:
    def config(**proxy: Any) -> Any:
        return config_from_mapping({"proxy": proxy}, "(test)", {"DATABASE_URL": "postgresql://x/y"})

    running, reread = config(port=8080, strategy="balanced"), config(port=9090, strategy="price", connect_timeout_s=2)
    assert restart_only_changes(running, reread) == ["port (8080 -> 9090)", "connect_timeout_s (5.0 -> 2.0)"]
    applied = live_config(running, reread)
    assert (applied.proxy.port, applied.proxy.connect_timeout_s, applied.proxy.strategy.value) == (8080, 5.0, "price")


def test_a_reload_says_what_waits_for_sync(mock_provider: Any, fresh_database_url: str, tmp_path: Path) -> None:
    """With a catalog to route by, a priority edit waits for `failover sync` and the log line says so,
    while a provider's new URL applies at once; `sync` then moves the traffic."""
    a, b, moved = mock_provider("a"), mock_provider("b"), mock_provider("b2")
    port = free_port()
    config = tmp_path / "failover.toml"
    config.write_text(CONFIG.format(port=port, max_attempts=3, a_priority=0, a=a.url, b=b.url))
    env = {**os.environ, "FAILOVER_CONFIG": str(config), "DATABASE_URL": fresh_database_url}
    for name in ("PROMETHEUS_MULTIPROC_DIR", "REDIS_URL"):
        env.pop(name, None)
    for command in ("migrate", "sync"):
        assert subprocess.run([sys.executable, "-m", "proxy.cli", command], env=env, check=False, timeout=60).returncode == 0
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=log_file
        )
        try:
            wait_ready(port, child)
            while httpx.get(f"http://127.0.0.1:{port}/readyz").json()["catalog"]["source"] != "postgres":
                time.sleep(0.05)
            config.write_text(CONFIG.format(port=port, max_attempts=3, a_priority=2, a=a.url, b=moved.url))
            child.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while "config reloaded" not in log_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            before_sync = httpx.post(url, json=BODY, headers={"x-gatewayz-provider": "b"}).headers
            first_before = httpx.post(url, json=BODY).headers["x-gatewayz-provider"]
            assert subprocess.run([sys.executable, "-m", "proxy.cli", "sync"], env=env, check=False, timeout=60).returncode == 0
            deadline = time.monotonic() + 5
            while httpx.post(url, json=BODY).headers["x-gatewayz-provider"] != "b" and time.monotonic() < deadline:
                time.sleep(0.05)
            first_after = httpx.post(url, json=BODY).headers["x-gatewayz-provider"]
        finally:
            child.terminate()
            child.wait(timeout=15)
    (line,) = [line for line in log_path.read_text().splitlines() if "config reloaded from" in line]
    assert f"applied provider b base_url ({b.url} -> {moved.url})" in line, line
    assert "waits for `failover sync`: provider a priority (0 -> 2)" in line, line
    assert "applied providers" not in line
    assert before_sync["x-gatewayz-provider"] == "b" and moved.stats()["requests"] >= 1  # the new URL at once
    assert (first_before, first_after) == ("a", "b")  # the priority once synced


def test_the_reload_summary_sorts_each_change_by_when_it_takes_effect() -> None:
    from proxy.http.reload import reload_summary

    def config(priority: int, url: str, price: float, aliases: dict[str, str]) -> Any:
        data = {
            "providers": [
                {"slug": "a", "name": "A", "base_url": url, "listing": "openai", "priority": priority},
            ],
            "models": [
                {"model_id": "gpt-4", "offers": [
                    {"provider": "a", "provider_model_id": "a/gpt-4", "pricing_prompt": price},
                    {"provider": "a", "provider_model_id": "a/new", "pricing_prompt": price},
                ]},
            ],
            "aliases": aliases,
        }  # fmt: skip
        return config_from_mapping(data, "(test)", {})

    running = config(0, "http://x/v1", 1e-6, {})
    reread = config(2, "http://y/v1", 2e-6, {"A/Llama": "llama"})
    synced = reload_summary(running, reread, [], held=frozenset({("a", "a/gpt-4")}))
    assert synced == (
        "config reloaded from (test): applied provider a base_url (http://x/v1 -> http://y/v1), "
        "pinned offer a:a/new changed, aliases (for the ids requests send); "
        "waits for `failover sync`: provider a priority (0 -> 2), pinned offer a:a/gpt-4 changed, "
        "aliases (the canonical ids of listed offers)"
    )
    alone = reload_summary(running, reread, ["port (1 -> 2)"], held=None)  # the config is the catalog
    assert "waits for" not in alone and "provider a priority (0 -> 2)" in alone
    assert alone.endswith("; needs a restart to take effect: port (1 -> 2)")
