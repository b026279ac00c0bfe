"""Helpers for the catalog tests: a migrated pool, a config from TOML text, real listing servers.

`ListingServer` is a tiny aiohttp app on 127.0.0.1 (a free port) that serves `GET /<prefix>/models`
for any number of fake providers, each with a body and status the test can change between calls,
and remembers the `Authorization` header each prefix received.
"""

from __future__ import annotations

import asyncio
import threading
import tomllib
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from proxy.config import Config, config_from_mapping
from proxy.store.migrate import apply_migrations


@asynccontextmanager
async def migrated_pool(url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    try:
        await apply_migrations(pool)
        yield pool
    finally:
        await pool.close()


def config_from_toml(text: str, env: Mapping[str, str] | None = None) -> Config:
    return config_from_mapping(tomllib.loads(text), "test.toml", dict(env or {}))


def openai_listing(*ids: str) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": i, "object": "model", "owned_by": "test"} for i in ids]}


def openrouter_listing(*entries: tuple[str, str, str, int]) -> dict[str, Any]:
    """Entries of (id, prompt price, completion price, context length), prices as strings per token."""
    return {
        "data": [
            {
                "id": i,
                "name": i,
                "context_length": ctx,
                "pricing": {"prompt": p, "completion": c, "request": "0"},
            }
            for i, p, c, ctx in entries
        ]
    }


@dataclass
class Listing:
    status: int = 200
    body: bytes = b'{"data": []}'
    authorization: list[str | None] = field(default_factory=list)

    def set_json(self, payload: object, status: int = 200) -> None:
        self.body, self.status = orjson.dumps(payload), status


class ListingServer:
    def __init__(self) -> None:
        self.listings: dict[str, Listing] = {}
        self.url = ""
        self._runner: web.AppRunner | None = None

    def add(
        self, prefix: str, payload: object = None, *, status: int = 200, body: bytes | None = None
    ) -> str:
        """Serve `/<prefix>/models`; return the provider's base URL."""
        listing = Listing(status=status)
        if body is not None:
            listing.body = body
        elif payload is not None:
            listing.set_json(payload, status)
        self.listings[prefix] = listing
        return f"{self.url}/{prefix}"

    async def _models(self, request: web.Request) -> web.Response:
        listing = self.listings.get(request.match_info["prefix"])
        if listing is None:
            return web.Response(status=404)
        listing.authorization.append(request.headers.get("Authorization"))
        return web.Response(status=listing.status, body=listing.body, content_type="application/json")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{prefix}/models", self._models)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@asynccontextmanager
async def listing_server() -> AsyncIterator[ListingServer]:
    server = ListingServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextmanager
def threaded_listing_server() -> Iterator[ListingServer]:
    """A `ListingServer` on a loop of its own thread, for tests that run the CLI (which blocks)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = ListingServer()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


STATIC_CATALOG = """
[[providers]]
slug = "openrouter"
name = "OpenRouter"
base_url = "http://127.0.0.1:9/openrouter"
listing = "none"

[[providers]]
slug = "featherless"
name = "Featherless"
base_url = "http://127.0.0.1:9/featherless"
listing = "none"
priority = 1

[[providers]]
slug = "portkey"
name = "Portkey"
base_url = "http://127.0.0.1:9/portkey"
listing = "none"
priority = 2

[[models]]
model_id = "gpt-4"
offers = [
  { provider = "openrouter", provider_model_id = "openai/gpt-4", pricing_prompt = 0.00003, pricing_completion = 0.00006 },
  { provider = "featherless", provider_model_id = "gpt-4", pricing_prompt = 0.000028, pricing_completion = 0.00005 },
  { provider = "portkey", provider_model_id = "gpt-4-0613", pricing_prompt = 0.000035, pricing_completion = 0.00007 },
]

[[models]]
model_id = "llama-3-70b-instruct"
offers = [
  { provider = "openrouter", provider_model_id = "meta-llama/llama-3-70b-instruct" },
  { provider = "featherless", provider_model_id = "meta-llama/Meta-Llama-3-70B-Instruct" },
]

[[models]]
model_id = "solo-model"
offers = [{ provider = "portkey", provider_model_id = "solo-model" }]
"""

HEALTH = """
UPDATE providers SET health_status = 'healthy', average_response_time_ms = 150 WHERE slug = 'openrouter';
UPDATE providers SET health_status = 'healthy', average_response_time_ms = 200 WHERE slug = 'featherless';
UPDATE providers SET health_status = 'degraded', average_response_time_ms = 500 WHERE slug = 'portkey';
UPDATE models SET health_status = 'healthy';
"""


async def seed_catalog(pool: asyncpg.Pool) -> Config:
    """The guide's example catalog: gpt-4 on openrouter, featherless (both healthy), portkey (degraded)."""
    from proxy.commands.sync import sync_catalog

    async def no_listing(provider: object) -> list[Any]:
        raise AssertionError("static providers are not fetched")

    config = config_from_toml(STATIC_CATALOG)
    reports = await sync_catalog(pool, config, no_listing)
    assert not any(r.error for r in reports)
    await pool.execute(HEALTH)
    return config
