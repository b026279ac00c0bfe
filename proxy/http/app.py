"""The ASGI application: the hot path in plain ASGI, everything else on Starlette.

POSTs to the three proxied routes go straight to `ProxyHandler` (no router, no middleware). The
rest (models, health, readiness, metrics, admin) is a small Starlette app, which also runs the
lifespan that starts and stops the gateway's background work.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy.config import Config, load_config
from proxy.errors import ConfigError, Unauthorized
from proxy.http import admin
from proxy.http.answers import client_error, error_body, provider_secrets
from proxy.http.gateway import Gateway
from proxy.http.handler import ROUTES, ProxyHandler
from proxy.types import Receive, Scope, Send
from proxy.upstream.client import UpstreamClient

log = logging.getLogger("gatewayz.reload")


async def list_models(request: Request) -> Response:
    """The canonical models, OpenAI's list shape; behind `FAILOVER_API_KEYS` like the proxied routes."""
    gateway: Gateway = request.app.state.gateway
    handler: ProxyHandler = request.app.state.handler
    try:
        handler.authorize(dict(request.scope["headers"]))
    except Unauthorized as exc:
        status, body = client_error(exc)
        return Response(body, status_code=status, media_type="application/json")
    created = int(gateway.started_at)
    data = [{"id": m, "object": "model", "created": created, "owned_by": "gatewayz"} for m in gateway.catalog.models()]
    return JSONResponse({"object": "list", "data": data})


async def proxied_elsewhere(request: Request) -> Response:
    """Never reached: POSTs to these routes go to the handler; this route makes other methods 405."""
    raise HTTPException(405)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when the catalog has models; says what is degraded (database, redis) without failing.

    `database` and `redis` are `ok`, `not_configured` or `unreachable`, as the background work last
    found them: answering this issues no query and no command. `providers_without_key` lists the
    active providers whose `api_key_env` variable is unset (`{"provider", "api_key_env"}` each).
    """
    gateway: Gateway = request.app.state.gateway
    models = len(gateway.catalog.models())
    database, redis = gateway.database_status, gateway.redis_status
    degraded = "unreachable" in (database, redis)
    body = {
        "status": ("degraded" if degraded else "ready") if models else "not_ready",
        "catalog": {
            "models": models,
            "source": gateway.catalog.source,
            "age_s": round(time.time() - gateway.catalog.loaded_at, 1),
        },
        "database": database,
        "redis": redis,
        "providers_without_key": [
            {"provider": p.slug, "api_key_env": p.api_key_env} for p in gateway.config.providers_without_key()
        ],
    }
    return JSONResponse(body, status_code=200 if models else 503)


async def metrics(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    await gateway.update_gauges()
    return Response(gateway.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    elif status == 404:
        message = f"no route {request.url.path} on this proxy (OpenAI-compatible routes live under /v1)"
    else:
        message = "the proxy could not handle this request"
    body = error_body(message, "invalid_request_error", "not_found" if status == 404 else f"http_{status}")
    return Response(body, status_code=status, media_type="application/json")


class GatewayApp:
    # `failover serve` turns this on: SIGHUP belongs to the process, not to an app a test runs in a thread.
    reload_on_sighup = False
    flush_access: Callable[[], None] | None = None  # writes access lines still waiting in a batch

    def __init__(self, config: Config, *, client: UpstreamClient | None = None) -> None:
        self.gateway = Gateway(config, client=client)
        self.handler = ProxyHandler(self.gateway)
        self.routes = Starlette(
            routes=[
                Route("/v1/models", list_models),
                Route("/healthz", healthz),
                Route("/readyz", readyz),
                Route("/metrics", metrics),
                *admin.ROUTES,
                *(Route(path, proxied_elsewhere, methods=["POST"]) for path in ROUTES),
            ],
            exception_handlers={HTTPException: http_error},
            lifespan=self._lifespan,
        )
        self.routes.state.gateway = self.gateway
        self.routes.state.handler = self.handler

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.gateway.start()
        if self.reload_on_sighup:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)
        try:
            yield
        finally:
            if self.reload_on_sighup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await self.gateway.stop()
            if self.flush_access is not None:  # uvicorn may end the process by its signal: no atexit
                self.flush_access()

    def reload(self) -> None:
        """Re-read `$FAILOVER_CONFIG` and apply it (`proxy.http.reload`); a bad file keeps the running config."""
        try:
            reread = load_config()
        except ConfigError as exc:
            log.warning("config reload failed, keeping the running config: %s", exc)
            return
        log.info(self.gateway.reload(reread))
        self.handler.provider_keys = provider_secrets(self.gateway.config)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in ROUTES:
            await self.handler(scope, receive, send)
            return
        await self.routes(scope, receive, send)


def create_app(config: Config, *, client: UpstreamClient | None = None) -> GatewayApp:
    return GatewayApp(config, client=client)
