"""A database that is down never shrinks what the proxy serves, and every process says so in two lines.

Real processes throughout: `failover migrate`, `sync`, `serve` and `health`, against a PostgreSQL of the
test's own that it stops and starts (`tests.own_postgres`), mock providers on loopback.
- A proxy started while its database is unreachable serves its last known catalog (the file in its
  data folder, or the Redis copy), says which in `/readyz`, and routes by the database once it answers.
- `/readyz` reports the database as it is now: unreachable within a second of the server stopping.
- An outage is one line when it starts and one when it ends, in the proxy and the health worker
  alike: no asyncpg traceback per retry.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.mock.testing import free_port
from tests.own_postgres import OwnPostgres, own_postgres

CONFIG = """
[proxy]
catalog_ttl_s = 30
[[providers]]
slug = "listed"
name = "Listed"
base_url = "{listed}"
listing = "openai"
[[providers]]
slug = "pinned"
name = "Pinned"
base_url = "{pinned}"
listing = "none"
priority = 1
[[models]]
model_id = "gpt-4"
offers = [{{ provider = "pinned", provider_model_id = "pinned/gpt-4" }}]
"""
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def postgres() -> Iterator[OwnPostgres]:
    with own_postgres() as server:
        yield server


@pytest.fixture
def shared(redis_server_url: str, redis_prefix: str) -> dict[str, str]:
    """The environment of instances that share a Redis (under a key prefix of this test's own)."""
    return {"REDIS_URL": redis_server_url, "FAILOVER_REDIS_PREFIX": redis_prefix}


@pytest.fixture
def catalog(tmp_path: Path, postgres: OwnPostgres, mock_provider: Any) -> Path:
    """A migrated and synced catalog: gpt-4 on both providers, and two models only the listing has."""
    listed = mock_provider("listed", models=("gpt-4", "gpt-3.5-turbo", "llama-3-70b"))
    pinned = mock_provider("pinned")
    config = tmp_path / "failover.toml"
    config.write_text(CONFIG.format(listed=listed.url, pinned=pinned.url))
    for command in ("migrate", "sync"):
        done = subprocess.run(
            [sys.executable, "-m", "proxy.cli", "--config", str(config), command],
            env=environment(postgres, tmp_path / "data"), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    return config


def environment(postgres: OwnPostgres, data: Path, redis: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "FAILOVER_REDIS_PREFIX")}
    env.update(DATABASE_URL=postgres.url, FAILOVER_DATA_DIR=str(data), **(redis or {}))
    return env


class Serve:
    """`failover serve` as a process, its stderr in a file."""

    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        with log.open("wb") as out:
            self.child = subprocess.Popen(
                [sys.executable, "-m", "proxy.cli", "--config", str(config), "serve", "--port", str(self.port)],
                env=env, stdout=subprocess.DEVNULL, stderr=out,
            )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"

    def ready(self) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while True:
            assert self.child.poll() is None and time.monotonic() < deadline, self.log.read_text()
            try:
                return dict(httpx.get(f"{self.base}/readyz", timeout=2).json())
            except httpx.TransportError:
                time.sleep(0.05)

    def until(self, check: Any, timeout: float) -> tuple[dict[str, Any], float]:
        """Poll `/readyz` until `check(body)`; the body and the seconds it took."""
        started = time.monotonic()
        while True:
            body = self.ready()
            if check(body):
                return body, time.monotonic() - started
            assert time.monotonic() - started < timeout, body
            time.sleep(0.05)

    def models(self) -> list[str]:
        return sorted(m["id"] for m in httpx.get(f"{self.base}/v1/models").json()["data"])

    def stop(self) -> str:
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
            self.child.wait(timeout=20)
        return self.log.read_text()


def outage_lines(log: str) -> tuple[list[str], list[str]]:
    lines = log.splitlines()
    return [line for line in lines if "database unreachable" in line], [
        line for line in lines if "database reachable again" in line
    ]


def served(serve: Serve, model: str) -> str | None:
    answer = httpx.post(f"{serve.base}/v1/chat/completions", json={"model": model, **CHAT}, timeout=10)
    return answer.headers.get("x-gatewayz-provider") if answer.status_code == 200 else None


def test_a_proxy_started_without_its_database_serves_the_last_known_catalog_from_disk(
    tmp_path: Path, postgres: OwnPostgres, catalog: Path
) -> None:
    data = tmp_path / "data"
    first = Serve(catalog, environment(postgres, data), tmp_path / "first.log")
    try:
        first.until(lambda body: body["catalog"]["source"] == "postgres", timeout=20)
        assert first.models() == ["gpt-3.5-turbo", "gpt-4", "llama-3-70b"]
    finally:
        first.stop()
    postgres.stop()
    second = Serve(catalog, environment(postgres, data), tmp_path / "second.log")
    try:
        ready = second.ready()
        assert (ready["status"], ready["database"], ready["catalog"]["source"]) == ("degraded", "unreachable", "disk")
        assert second.models() == ["gpt-3.5-turbo", "gpt-4", "llama-3-70b"]  # not the config's gpt-4 alone
        assert served(second, "llama-3-70b") == "listed"
        assert httpx.get(f"{second.base}/v1/models/llama-3-70b").status_code == 200
        postgres.start()
        body, took = second.until(lambda b: b["catalog"]["source"] == "postgres" and b["database"] == "ok", 15)
        assert body["status"] == "ready"
    finally:
        log = second.stop()
    assert "Traceback" not in log, log
    down, back = outage_lines(log)
    assert len(down) == 1 and len(back) == 1, log
    print(f"database back: the proxy routed by it {took:.1f} s after the server started")


def test_a_proxy_started_without_its_database_serves_the_redis_copy(
    tmp_path: Path, postgres: OwnPostgres, catalog: Path, shared: dict[str, str]
) -> None:
    first = Serve(catalog, environment(postgres, tmp_path / "one", shared), tmp_path / "first.log")
    try:
        first.until(lambda body: body["catalog"]["source"] == "postgres", timeout=20)
        time.sleep(0.5)  # the Redis copy is written right after the catalog is installed
    finally:
        first.stop()
    postgres.stop()
    other = Serve(catalog, environment(postgres, tmp_path / "another-folder", shared), tmp_path / "second.log")
    try:
        ready = other.ready()
        assert (ready["database"], ready["catalog"]["source"]) == ("unreachable", "redis")
        assert other.models() == ["gpt-3.5-turbo", "gpt-4", "llama-3-70b"]
    finally:
        log = other.stop()
    assert "Traceback" not in log, log


@pytest.mark.parametrize("with_redis", [False, True], ids=["postgres-notify", "redis"])
def test_readyz_reports_the_database_as_it_is_and_an_outage_is_two_lines(
    tmp_path: Path, postgres: OwnPostgres, catalog: Path, with_redis: bool, shared: dict[str, str]
) -> None:
    env = environment(postgres, tmp_path / "data", shared if with_redis else None)
    serve = Serve(catalog, env, tmp_path / "serve.log")
    try:
        serve.until(lambda body: body["database"] == "ok" and body["catalog"]["source"] == "postgres", 20)
        postgres.stop()
        _, noticed = serve.until(lambda body: body["database"] == "unreachable", timeout=5)
        assert noticed < 1.0, f"readyz said ok for {noticed:.1f} s after the database stopped"
        assert served(serve, "llama-3-70b") == "listed"  # the catalog stays
        time.sleep(8)  # long enough for asyncpg's pool to retry several times
        postgres.start()
        serve.until(lambda body: body["database"] == "ok", timeout=10)
        assert served(serve, "llama-3-70b") == "listed"
    finally:
        log = serve.stop()
    assert "Traceback" not in log and "Failed to restore" not in log, log
    down, back = outage_lines(log)
    assert len(down) == 1 and len(back) == 1, log
    other = [line for line in log.splitlines() if not line.startswith("{") and "listening on" not in line]
    assert len(other) == 2, other  # nothing else was logged about it


def test_a_health_worker_logs_an_outage_in_two_lines(tmp_path: Path, postgres: OwnPostgres, catalog: Path) -> None:
    log_path = tmp_path / "health.log"
    with log_path.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "--config", str(catalog), "health", "--interval", "0.5"],
            env=environment(postgres, tmp_path / "data"), stdout=subprocess.DEVNULL, stderr=out,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while "took the probing leadership" not in log_path.read_text():
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)
        postgres.stop()
        time.sleep(8)
        postgres.start()
        deadline = time.monotonic() + 20
        while "database reachable again" not in log_path.read_text():
            assert worker.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    log = log_path.read_text()
    assert "Traceback" not in log and "Failed to restore" not in log, log
    down, back = outage_lines(log)
    assert len(down) == 1 and len(back) == 1, log


async def test_the_newest_copy_of_this_databases_catalog_is_served(tmp_path: Path, shared: dict[str, str]) -> None:
    """Unit: `CatalogSnapshots.newest` reads the file and the Redis copy and takes the one written last,
    never one taken from another database."""
    from proxy.store.redis import redis_client
    from proxy.store.snapshot import CatalogSnapshots
    from proxy.store.wire import CatalogSnapshot, catalog_key
    from proxy.types import Offer

    def offers(model: str) -> dict[str, list[Offer]]:
        return {model: [Offer(model, "a", f"a/{model}", "http://127.0.0.1:9/v1", "A_KEY")]}

    from proxy.config import Secret

    key = catalog_key(shared["FAILOVER_REDIS_PREFIX"])
    disk_only = CatalogSnapshots(tmp_path / "catalog.json", None, key, "db-one")
    both = CatalogSnapshots(tmp_path / "catalog.json", redis_client(Secret(shared["REDIS_URL"])), key, "db-one")
    other_database = CatalogSnapshots(tmp_path / "catalog.json", None, key, "db-two")
    try:
        assert await both.newest() is None
        await both.save(CatalogSnapshot(offers("old"), frozenset(), 100.0))  # both copies
        await disk_only.save(CatalogSnapshot(offers("new"), frozenset({"z"}), 200.0))  # the file only
        newest = await both.newest()
        assert newest is not None and (newest.source, list(newest.offers), newest.retired) == ("disk", ["new"], {"z"})
        assert await other_database.newest() is None
        await both.save(CatalogSnapshot(offers("newer"), frozenset(), 300.0))
        newest = await both.newest()
        assert newest is not None and list(newest.offers) == ["newer"]
    finally:
        await both.aclose()


def test_an_outage_is_one_line_at_each_end_and_a_query_error_is_not_an_outage() -> None:
    """Unit: `DatabaseHealth` as every part of a process reports to it."""
    import logging

    import asyncpg

    from proxy.store.outage import DatabaseHealth

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    log = logging.getLogger("test.outage")
    log.addHandler(Collect())
    clock = iter([10.0, 41.2]).__next__
    health = DatabaseHealth(log, "serving the last known catalog until it is back", clock=clock)
    health.answered()
    health.failed(asyncpg.UndefinedTableError("relation \"models\" does not exist"))
    assert health.status == "ok"  # the server answered
    for _ in range(5):
        health.failed(ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"))
        health.answered()  # an old session answering during a shutdown does not end it
    assert health.status == "unreachable" and health.trouble.is_set()
    health.recovered()
    assert health.status == "ok" and not health.trouble.is_set()
    assert lines == [
        'database error: UndefinedTableError: relation "models" does not exist',
        "database unreachable: ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 5432); "
        "serving the last known catalog until it is back",
        "database reachable again after 31.2 s",
    ]
