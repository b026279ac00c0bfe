"""The ASGI application: the hot path in plain ASGI, everything else on Starlette.

Requests to the proxied endpoints (`proxy.failover.endpoints.PROXIED`: the POSTs that fail over,
and a stored response's follow-ups) go straight to `ProxyHandler` (no router, no middleware). The
rest (models, health, readiness, metrics, admin) is a small Starlette app, which also runs the
lifespan that starts and stops the gateway's background work. An unknown path gets a 404 that
lists the routes; a known path with the wrong method a 405 that names the right one.
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
from proxy.failover.endpoints import PROXIED, PROXIED_POSTS, match, route_list, route_patterns
from proxy.http.answers import client_error, error_body
from proxy.http.gateway import Gateway
from proxy.http.handler import ProxyHandler
from proxy.http.identity import authorize
from proxy.http.views import admin, usage_views
from proxy.types import Receive, Scope, Send
from proxy.upstream.client import UpstreamClient

log = logging.getLogger("gatewayz.reload")
RESPONSES = "/v1/responses/"  # a stored response's follow-ups (`proxy.failover.endpoints.match`)


def _model_object(gateway: Gateway, model_id: str) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": int(gateway.started_at), "owned_by": "gatewayz"}


async def list_models(request: Request) -> Response:
    """The canonical models, OpenAI's list shape; behind `FAILOVER_API_KEYS` like the proxied routes."""
    gateway: Gateway = request.app.state.gateway
    refused = _refused(request)
    if refused is not None:
        return refused
    return JSONResponse({"object": "list", "data": [_model_object(gateway, m) for m in gateway.catalog.models()]})


def _refused(request: Request) -> Response | None:
    """The 401 of a request without a client key (`FAILOVER_API_KEYS`), as on the proxied routes."""
    gateway: Gateway = request.app.state.gateway
    try:
        authorize(gateway.live.current, dict(request.scope["headers"]))
    except Unauthorized as exc:
        status, body = client_error(exc)
        return Response(body, status_code=status, media_type="application/json")
    return None


async def retrieve_model(request: Request) -> Response:
    """One canonical model, for its canonical or a provider-style id (`openai/gpt-4`, slash raw or
    sent as `%2F`), as requests map it; 404 `model_not_found` otherwise."""
    gateway: Gateway = request.app.state.gateway
    refused = _refused(request)
    if refused is not None:
        return refused
    asked: str = request.path_params["model"]
    model_id = gateway.catalog.resolve(asked)
    if model_id is None:
        body = error_body(
            f"The model '{asked[:256]}' does not exist on this proxy",
            "invalid_request_error",
            "model_not_found",
            "model",
        )
        return Response(body, status_code=404, media_type="application/json")
    return JSONResponse(_model_object(gateway, model_id))


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
    allowed = (exc.headers or {}).get("Allow", "") if isinstance(exc, HTTPException) else ""
    if status == 405:
        message = f"{request.method} is not allowed on {request.url.path}: use {allowed or 'another method'}"
    elif status == 404:
        message = f"no route {request.method} {request.url.path} on this proxy; its routes are: {route_list()}"
    else:
        message = "the proxy could not handle this request"
    body = error_body(message, "invalid_request_error", "not_found" if status == 404 else f"http_{status}")
    headers = {"Allow": allowed} if allowed else None
    return Response(body, status_code=status, media_type="application/json", headers=headers)


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
                Route("/v1/models/{model:path}", retrieve_model),
                Route("/healthz", healthz),
                Route("/readyz", readyz),
                Route("/metrics", metrics),
                *admin.ROUTES,
                Route("/v1/generation", usage_views.generation),
                Route("/admin/usage", usage_views.admin_usage),
                *(Route(path, proxied_elsewhere, methods=methods) for path, methods in route_patterns().items()),
            ],
            exception_handlers={HTTPException: http_error},
            lifespan=self._lifespan,
        )
        self.routes.state.gateway = self.gateway

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
            self.gateway.flush_usage()  # SIGHUP flushes the usage records either way
            return
        log.info(self.gateway.reload(reread))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if scope["method"] == "POST" and path in PROXIED_POSTS:
                await self.handler(scope, receive, send, PROXIED[("POST", path)])
                return
            if path.startswith(RESPONSES):
                found = match(scope["method"], path)
                if found is not None:
                    await self.handler(scope, receive, send, *found)
                    return
        await self.routes(scope, receive, send)


def create_app(config: Config, *, client: UpstreamClient | None = None) -> GatewayApp:
    return GatewayApp(config, client=client)
