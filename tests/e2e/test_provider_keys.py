"""A provider whose key variable is unset is never a silent accident: `check` fails naming the
variable, `serve` and `health` warn at start-up, `readyz` lists it. A provider that needs no key
says so in the config by naming no `api_key_env`, and gets no warning."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from proxy.cli import main
from proxy.commands.check import run_checks
from proxy.commands.sync import sync_catalog
from proxy.mock.testing import free_port
from tests.catalog_helpers import config_from_toml, migrated_pool

CONFIG = """
[[providers]]
slug = "keyed"
name = "Keyed"
base_url = "{keyed}"
api_key_env = "KEYED_TEST_API_KEY"
listing = "none"

[[providers]]
slug = "local"
name = "Local vLLM"
base_url = "{local}"
listing = "none"

[[models]]
model_id = "gpt-4"
offers = [
  {{ provider = "keyed", provider_model_id = "gpt-4" }},
  {{ provider = "local", provider_model_id = "gpt-4" }},
]
"""
WARNING = "provider keyed: KEYED_TEST_API_KEY is not set, so requests to it go out without a key"


def config_text(keyed: str = "http://127.0.0.1:9/v1", local: str = "http://127.0.0.1:9/v1") -> str:
    return CONFIG.format(keyed=keyed, local=local)


@pytest.fixture
async def synced(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with migrated_pool(fresh_database_url) as pool:
        await sync_catalog(pool, config_from_toml(config_text()))
        yield pool


async def test_check_fails_naming_the_unset_variable(synced: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEYED_TEST_API_KEY", raising=False)
    providers = {r.name: r for r in await run_checks(synced)}["Providers Data"]
    assert not providers.passed
    assert "keyed (KEYED_TEST_API_KEY)" in providers.reason and "local" not in providers.reason
    monkeypatch.setenv("KEYED_TEST_API_KEY", "sk-test-keyed")
    providers = {r.name: r for r in await run_checks(synced)}["Providers Data"]
    assert providers.passed, providers.line()


def test_serve_warns_at_start_and_readyz_lists_the_provider(
    mock_provider: Any, fresh_database_url: str, tmp_path: Path
) -> None:
    keyed, local = mock_provider("keyed"), mock_provider("local")
    path = tmp_path / "failover.toml"
    path.write_text(config_text(keyed.url, local.url))
    port = free_port()
    env = {**os.environ, "FAILOVER_CONFIG": str(path), "DATABASE_URL": fresh_database_url}
    env.pop("KEYED_TEST_API_KEY", None)
    env.pop("REDIS_URL", None)
    serve = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    with serve:
        try:
            ready = wait_ready(port, serve)
        finally:
            serve.terminate()
        _, err = serve.communicate(timeout=30)
    assert ready["providers_without_key"] == [{"provider": "keyed", "api_key_env": "KEYED_TEST_API_KEY"}]
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert warnings == [f"failover serve: warning: {WARNING} (set it, or remove api_key_env from {path} if keyed "
                        "needs none)"]
    assert err.index("warning") < err.index("listening")


def wait_ready(port: int, serve: subprocess.Popen[str]) -> dict[str, Any]:
    for _ in range(300):
        assert serve.poll() is None, serve.stderr.read() if serve.stderr else ""
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
            if answer.status_code == 200:
                body: dict[str, Any] = answer.json()
                return body
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("serve did not become ready")


def test_health_warns_at_start(
    fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "failover.toml"
    path.write_text(config_text())
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    monkeypatch.delenv("KEYED_TEST_API_KEY", raising=False)
    with caplog.at_level(logging.WARNING, logger="gatewayz.health"):
        assert main(["health", "--once", "--config", str(path)]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(w.startswith(WARNING) for w in warnings), warnings
    assert not any("local" in w for w in warnings)


def test_a_provider_with_its_key_set_gets_no_warning() -> None:
    config = config_from_toml(config_text(), env={"KEYED_TEST_API_KEY": "sk-test-keyed"})
    assert config.key_warnings() == []
    assert [p.slug for p in config_from_toml(config_text()).providers_without_key()] == ["keyed"]
