"""A flaky listing never shrinks the catalog: `failover sync` keeps what it could not see, writes the
config's pinned offers whatever the listing says, and deactivates a provider's listed offers only after
its listing failed (or answered empty) on several syncs in a row. Run with the real CLI against a
PostgreSQL of the test's own, and a listing server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.mock.testing import free_port
from tests.catalog_helpers import ListingServer, openai_listing, threaded_listing_server
from tests.own_postgres import OwnPostgres, own_postgres

CONFIG = """
[[providers]]
slug = "steady"
name = "Steady"
base_url = "{steady}"
listing = "openai"

[[providers]]
slug = "flaky"
name = "Flaky"
base_url = "{flaky}"
listing = "openai"
priority = 1

[[models]]
model_id = "gpt-4"
offers = [{{ provider = "flaky", provider_model_id = "flaky/gpt-4" }}]
"""
# A 503 from a listing, as OpenAI's API sends it while overloaded (the body of the `error` envelope
# documented at https://platform.openai.com/docs/guides/error-codes: "503 - The engine is currently
# overloaded, please try again later").
OVERLOADED = b'{"error": {"message": "The engine is currently overloaded, please try again later", "type": "server_error", "param": null, "code": null}}'


@pytest.fixture(scope="module")
def postgres() -> Iterator[OwnPostgres]:
    with own_postgres() as server:
        yield server


@pytest.fixture
def database(postgres: OwnPostgres) -> Iterator[str]:
    """A fresh database on the test's own server."""
    import asyncio

    import asyncpg

    name = f"flaky_{time.monotonic_ns()}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(postgres.url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield postgres.url.rsplit("/", 1)[0] + f"/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def failover(config: Path, database: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "FAILOVER_CONFIG")}
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", "--config", str(config), *args],
        env={**env, "DATABASE_URL": database}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def explained(config: Path, database: str, model: str = "gpt-4") -> list[str]:
    done = failover(config, database, "explain", model, "--json")
    assert done.returncode == 0, done.stderr
    return [entry["provider_model_id"] for entry in json.loads(done.stdout)["failover_order"]]


def setup(tmp_path: Path, server: ListingServer) -> Path:
    config = tmp_path / "failover.toml"
    steady = server.add("steady", openai_listing("gpt-4", "gpt-3.5-turbo"))
    flaky = server.add("flaky", body=OVERLOADED, status=503)
    config.write_text(CONFIG.format(steady=steady, flaky=flaky))
    return config


def test_a_failed_listing_on_a_fresh_catalog_still_syncs_the_pinned_offers(tmp_path: Path, database: str) -> None:
    with threaded_listing_server() as server:
        config = setup(tmp_path, server)
        assert failover(config, database, "migrate").returncode == 0
        synced = failover(config, database, "sync")
    assert synced.returncode == 1, synced.stdout  # a listing failed: scripts still see it
    assert "Steady: 2 models synced (2 added, 0 updated, 0 deactivated)" in synced.stdout
    assert "Flaky: listing FAILED (" in synced.stdout and "answered HTTP 503" in synced.stdout
    assert "1 pinned offers synced" in synced.stdout, synced.stdout
    assert sorted(explained(config, database)) == ["flaky/gpt-4", "gpt-4"]  # gpt-4 keeps its fallback


def test_listed_offers_stay_until_the_listing_failed_three_syncs_in_a_row(tmp_path: Path, database: str) -> None:
    with threaded_listing_server() as server:
        config = setup(tmp_path, server)
        server.listings["flaky"].set_json(openai_listing("flaky/gpt-4", "flaky-special"))
        assert failover(config, database, "migrate").returncode == 0
        assert failover(config, database, "sync").returncode == 0
        assert explained(config, database, "flaky-special") == ["flaky-special"]
        server.listings["flaky"].body, server.listings["flaky"].status = OVERLOADED, 503
        outputs = []
        for _ in range(2):
            outputs.append(failover(config, database, "sync").stdout)
            assert explained(config, database, "flaky-special") == ["flaky-special"]
        outputs.append(failover(config, database, "sync").stdout)
        gone = failover(config, database, "explain", "flaky-special")
        assert explained(config, database) == ["gpt-4", "flaky/gpt-4"]  # the pinned offer stays
        server.listings["flaky"].set_json(openai_listing("flaky/gpt-4", "flaky-special"))
        back = failover(config, database, "sync")
    assert "kept its 2 offers as they were (failed sync 1 of 3 before its listed offers are deactivated)" in outputs[0]
    assert "(failed sync 2 of 3 before" in outputs[1]
    assert "failed 3 syncs in a row: 1 listed offers deactivated" in outputs[2], outputs[2]
    assert gone.returncode == 1
    assert back.returncode == 0 and "Flaky: 2 models synced (0 added, 1 updated, 0 deactivated)" in back.stdout


def test_an_empty_listing_is_confirmed_before_it_empties_the_provider(tmp_path: Path, database: str) -> None:
    with threaded_listing_server() as server:
        config = setup(tmp_path, server)
        server.listings["flaky"].set_json(openai_listing("flaky/gpt-4", "flaky-special"))
        assert failover(config, database, "migrate").returncode == 0
        assert failover(config, database, "sync").returncode == 0
        server.listings["flaky"].set_json(openai_listing())
        first = failover(config, database, "sync")
        kept = explained(config, database, "flaky-special")
        failover(config, database, "sync")
        third = failover(config, database, "sync")
    assert first.returncode == 0  # an empty answer is an answer, not a failure
    assert "Flaky: listing answered with no models; kept its 2 offers as they were" in first.stdout, first.stdout
    assert kept == ["flaky-special"]
    assert "answered with no models 3 syncs in a row: 1 listed offers deactivated" in third.stdout, third.stdout


PINNED_LATER = """
[[models]]
model_id = "gpt-3.5-turbo"
offers = [{ provider = "flaky", provider_model_id = "flaky/gpt-3.5-turbo" }]
"""


def test_a_proxy_routes_its_pinned_offers_whatever_the_database_holds(
    tmp_path: Path, database: str, mock_provider: Any
) -> None:
    steady, flaky = mock_provider("steady"), mock_provider("flaky")
    config = tmp_path / "failover.toml"
    config.write_text(CONFIG.format(steady=steady.url, flaky=flaky.url))
    flaky.set_faults(fault="status", status=503, paths=["/v1/models"])
    assert failover(config, database, "migrate").returncode == 0
    failover(config, database, "sync")
    config.write_text(config.read_text() + PINNED_LATER)  # pinned after the sync: not in the catalog yet
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    env.update(DATABASE_URL=database, FAILOVER_CONFIG=str(config))
    serve = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                ready = httpx.get(f"{base}/readyz").json()
                if ready["catalog"]["source"] == "postgres":
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and serve.poll() is None
            time.sleep(0.1)
        body = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "hi"}]}
        answer = httpx.post(f"{base}/v1/chat/completions", json=body, headers={"x-gatewayz-provider": "flaky"})
    finally:
        serve.terminate()
        log = serve.communicate(timeout=15)[1].decode()
    assert "Traceback" not in log, log
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-gatewayz-provider"] == "flaky"
    assert answer.headers["x-gatewayz-provider-model"] == "flaky/gpt-3.5-turbo"
