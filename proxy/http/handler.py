"""The hot path: one proxied request, in plain ASGI.

read the body (bounded) -> parse once -> look up and rank offers -> attempt loop -> answer.
It touches neither Postgres nor Redis. A client that disconnects after sending its body cancels
the request at once, which closes the upstream response in the attempt loop's or relay's `finally`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson

from proxy.errors import (
    AllOffersFailed,
    ClientDisconnected,
    ClientError,
    ModelNotFound,
    ShuttingDown,
    Unauthorized,
    UpstreamError,
    UpstreamStatus,
)
from proxy.failover.attempts import ForwardRequest, Served, run_attempts, settle_stream
from proxy.failover.client_request import (
    MAX_MODEL_LENGTH,
    SLUG,
    ClientRequest,
    parse_request,
    require_known_providers,
)
from proxy.failover.endpoints import PROXIED, Endpoint
from proxy.failover.form_request import parse_form
from proxy.failover.hedge import hedge_outcome
from proxy.failover.model_fallbacks import not_offered, serve_request
from proxy.failover.verdict import expected_choices, stream_event_outcome
from proxy.http.answers import (
    JSON,
    Headers,
    all_failed,
    client_error,
    error_body,
    forwarded_headers,
    gateway_headers,
    provider_secrets,
    redact,
)
from proxy.http.bearer import bearer_token
from proxy.http.body import read_body
from proxy.http.chain import PinnedUnavailable, pinned_ranking, pinned_unavailable
from proxy.http.disconnect import DisconnectWatch
from proxy.http.gateway import Gateway
from proxy.http.relay import relay_bytes, relay_stream
from proxy.types import NO_PREFERENCES, Attempt, Offer, Ranking, Receive, Scope, Send
from proxy.upstream.answer_model import StreamRewrite, rewrite_json
from proxy.upstream.responses_events import TypedStreamWatch
from proxy.upstream.sse import RelayWatch, StreamWatch
from proxy.upstream.usage import Usage, stream_usage, usage_of

access_log = logging.getLogger("gatewayz.access")

ROUTES = PROXIED
FORWARDED = frozenset({b"accept", b"user-agent", b"http-referer", b"x-title", b"openai-beta"})


@dataclass(slots=True)
class Exchange:
    """What one request did, for the answer's headers, the metrics and the log line."""

    route: str
    request_id: str
    started: float
    model: str = ""
    status: int = 0
    outcome: str = "error"
    attempts: list[Attempt] = field(default_factory=list)
    provider: str = ""
    offer: Offer | None = None  # the offer that served the answer
    upstream_s: float = 0.0
    usage: Usage | None = None
    finished: bool = False  # the answer is complete: a disconnect now changes nothing
    disconnected: bool = False
    streaming: bool = False  # a stream's 200 went out and its end has not yet


class ProxyHandler:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.keys = [k.reveal().encode() for k in gateway.config.api_keys]
        self.provider_keys = provider_secrets(gateway.config)
        # `failover serve` sets this to write access lines straight to its batched stream, past the
        # logging machinery (which costs more than the rest of the line); otherwise the logger is used.
        self.write_access: Callable[[str], None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        headers = dict(scope["headers"])
        request_id = _request_id(headers.get(b"x-request-id"))
        ex = Exchange(route=path, request_id=request_id, started=time.perf_counter())
        task = asyncio.current_task()
        watcher: DisconnectWatch | None = None
        body: bytes | bytearray = b""
        try:
            self.authorize(headers)
            settings = self.gateway.settings
            endpoint = PROXIED[path]
            upload = endpoint.form != "json"
            body = await read_body(receive, headers, settings.max_body_bytes, settings.deadline_s, upload)
            assert task is not None
            watcher = DisconnectWatch(receive, task, ex)
            await self._serve(ex, endpoint, body, headers, send)
        except ClientError as exc:
            ex.model = ex.model or _asked_model(body)
            await self._reply_error(ex, send, *client_error(exc), [])
            ex.outcome = exc.code
        except ClientDisconnected:
            ex.status, ex.outcome = 499, ClientDisconnected.code
        except _AbortAnswer:
            pass  # returning with the answer incomplete: the server drops the connection
        except asyncio.CancelledError:
            if task is None:
                raise
            task.uncancel()
            if ex.disconnected:
                ex.status, ex.outcome = 499, ClientDisconnected.code
            else:  # only the server cancels otherwise: uvicorn, shutdown_grace_s after SIGTERM
                await self._end_at_shutdown(ex, send)
        finally:
            if watcher is not None:
                watcher.cancel()
            self._account(ex)

    def authorize(self, headers: dict[bytes, bytes]) -> None:
        """`Unauthorized` unless `FAILOVER_API_KEYS` is unset or the bearer token is one of them."""
        if not self.keys:
            return
        token = bearer_token(headers.get(b"authorization", b""))
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(token, key)
        if not matched:
            raise Unauthorized("invalid or missing API key for this proxy (Authorization: Bearer <key>)")

    async def _serve(
        self, ex: Exchange, endpoint: Endpoint, body: bytes | bytearray, headers: dict[bytes, bytes], send: Send
    ) -> None:
        preferred = headers.get(b"x-gatewayz-provider")
        provider = preferred.decode("latin-1") if preferred is not None else None
        request: ForwardRequest = (
            parse_request(body, provider)
            if endpoint.form == "json"
            else parse_form(body, headers.get(b"content-type", b""), provider)
        )
        gateway = self.gateway
        if request.prefs is not NO_PREFERENCES:
            require_known_providers(request.prefs, provider, gateway.keys)
        ex.model = request.model
        forward = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers.items() if k in FORWARDED}
        forward["content-type"] = "application/json" if endpoint.form == "json" else _content_type(headers)
        forward["x-request-id"] = ex.request_id
        deadline = asyncio.get_running_loop().time() + gateway.settings.deadline_s
        pinned: PinnedUnavailable | None = None
        serving: Awaitable[Served]
        chained = await self._chained(ex, endpoint, request)
        if chained is not None:  # a Responses API chain stays on its provider: no other offer, no fallback
            ranking, pinned = chained
            serving = run_attempts(
                gateway.context, request, ranking, path=endpoint.upstream, headers=forward, deadline=deadline,
                endpoint=endpoint,
            )  # fmt: skip
        else:
            ex.model, serving = serve_request(
                gateway.router, request, path=endpoint.upstream, headers=forward, deadline=deadline, endpoint=endpoint
            )
        try:
            served = await serving
        except AllOffersFailed as exc:
            ex.attempts = list(exc.attempts)
            status, payload, extra = all_failed(exc, ex.model) if pinned is None else pinned_unavailable(pinned, exc)
            await self._reply_error(ex, send, status, payload, extra)
            ex.outcome = exc.code if pinned is None else pinned.code
            return
        except UpstreamStatus as exc:  # not retryable: the client's own mistake, passed through unchanged
            ex.attempts = list(exc.attempts)
            await self._pass_through(ex, send, exc)
            return
        await self._answer(ex, endpoint, request, served, send)

    async def _chained(
        self, ex: Exchange, endpoint: Endpoint, request: ForwardRequest
    ) -> tuple[Ranking, PinnedUnavailable] | None:
        """The pinned offer of a `POST /v1/responses` that continues a response; None for any other request."""
        if endpoint.kind != "responses" or not isinstance(request, ClientRequest):
            return None
        if request.body.get("previous_response_id") is None:
            return None
        offers = self.gateway.catalog.lookup(request.model, endpoint.kind)
        if not offers:
            raise not_offered(request.model, endpoint, offers is not None)
        ex.model = offers[0].model_id
        return await pinned_ranking(self.gateway, request, offers)

    async def _answer(
        self, ex: Exchange, endpoint: Endpoint, request: ForwardRequest, served: Served, send: Send
    ) -> None:
        ex.attempts, ex.offer, ex.upstream_s = served.attempts, served.offer, served.upstream_s
        ex.model = served.offer.model_id
        ex.provider = served.offer.provider_slug
        headers = forwarded_headers(served.response.headers)
        headers += gateway_headers(served.offer, served.attempts, ex.request_id)
        ex.status = served.response.status
        if endpoint.kind == "responses":
            await self._pin(served)
        if endpoint.answer == "binary":
            await self._relay_binary(ex, served, headers, send)
            return
        canonical = self.gateway.settings.answer_model == "canonical"
        if not request.stream:
            body = answer_json(served, ex.model) if canonical else served.first
            headers.append((b"content-length", str(len(body)).encode()))
            ex.finished = True
            await send({"type": "http.response.start", "status": ex.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            ex.usage, ex.outcome = usage_of(served.parsed), "ok"
            return
        await send({"type": "http.response.start", "status": ex.status, "headers": headers})
        ex.streaming = True
        watch = self._watch(endpoint, request)
        error: UpstreamError | None = None

        def finished() -> None:  # the final event went out: a disconnect or a shutdown now changes nothing
            ex.finished, ex.streaming = True, False

        try:
            error = await relay_stream(
                send,
                served.response,
                served.first,
                idle_timeout_s=self.gateway.settings.stream_idle_timeout_s,
                watch=watch,
                on_final=finished,
                rewrite=StreamRewrite.needed(served.first, ex.model) if canonical else None,  # the canonical model
            )
            ex.streaming = False
        finally:
            ex.finished = True
            settle_stream(self.gateway.context, served, error)
            ex.usage = stream_usage(watch)
        ex.outcome = "ok" if error is None else error.outcome

    @staticmethod
    def _watch(endpoint: Endpoint, request: ForwardRequest) -> RelayWatch:
        """What follows a committed stream: chat-like chunks (`n` choices) or a typed stream's events."""
        if endpoint.events != "chat":
            return TypedStreamWatch(transcript=endpoint.events == "transcript")
        choices = expected_choices(request.body) if isinstance(request, ClientRequest) else 1
        return StreamWatch(stream_event_outcome, choices)

    async def _pin(self, served: Served) -> None:
        """A created response is pinned to its offer before the client can name it in a follow-up."""
        ident = served.response_id
        if ident is None and served.parsed is not None:
            found = served.parsed.get("id")
            ident = found if isinstance(found, str) else None
        if ident is not None:
            await self.gateway.pins.record(ident, served.offer)

    async def _relay_binary(self, ex: Exchange, served: Served, headers: Headers, send: Send) -> None:
        await send({"type": "http.response.start", "status": ex.status, "headers": headers})
        try:
            idle = self.gateway.settings.stream_idle_timeout_s
            await relay_bytes(send, served.response, served.first, idle)
            ex.outcome = "ok"
        except UpstreamError as exc:
            ex.outcome = exc.outcome
            raise _AbortAnswer from exc  # the server drops the connection: the client sees a cut body
        finally:
            ex.finished = True

    async def _pass_through(self, ex: Exchange, send: Send, exc: UpstreamStatus) -> None:
        # a provider that echoes the key we sent it (in a 400 body or a header) must not hand it to the client
        body = redact(exc.body, self.provider_keys)
        headers = [(k, redact(v, self.provider_keys)) for k, v in forwarded_headers(exc.headers)]
        headers += gateway_headers(exc.offer, ex.attempts, ex.request_id)
        headers.append((b"content-length", str(len(body)).encode()))
        ex.status, ex.outcome, ex.finished = exc.status, f"upstream_{exc.status}", True
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _reply_error(self, ex: Exchange, send: Send, status: int, body: bytes, extra: Headers) -> None:
        headers = [JSON, (b"content-length", str(len(body)).encode()), *extra]
        headers += gateway_headers(None, ex.attempts, ex.request_id)
        ex.status, ex.finished = status, True
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _end_at_shutdown(self, ex: Exchange, send: Send) -> None:
        """End an answer the server stopped waiting for: a committed stream gets the error event (and
        no `[DONE]`), an answer not yet begun a 503 (a binary one under way is already `finished`: left
        incomplete, the server drops the connection); either way it is counted and logged as such."""
        error = ShuttingDown("the proxy shut down before this answer was complete")
        if ex.streaming:
            ex.streaming = False
            body = error_body(str(error), "server_error", error.code)
            await send({"type": "http.response.body", "body": b"data: " + body + b"\n\n", "more_body": False})
        elif not ex.finished:
            body = error_body(str(error), "server_error", error.code)
            await self._reply_error(ex, send, 503, body, [])
        ex.outcome = error.code

    def _account(self, ex: Exchange) -> None:
        metrics = self.gateway.metrics
        elapsed = time.perf_counter() - ex.started
        model = metrics.model(ex.model)
        metrics.child(metrics.requests, ex.route, model, ex.outcome).inc()
        metrics.child(metrics.duration, ex.route).observe(elapsed)
        if ex.outcome == "ok":
            metrics.child(metrics.overhead).observe(max(0.0, elapsed - ex.upstream_s))
        if ex.usage is not None and ex.provider:
            self._account_usage(ex, model)
        if self.write_access is not None:
            self.write_access(_log_line(ex, elapsed))
        elif access_log.isEnabledFor(logging.INFO):
            access_log.info(_log_line(ex, elapsed))

    def _account_usage(self, ex: Exchange, model: str) -> None:
        assert ex.usage is not None
        metrics = self.gateway.metrics
        provider = metrics.provider(ex.provider)
        metrics.child(metrics.tokens, provider, model, "prompt").inc(ex.usage.prompt_tokens)
        metrics.child(metrics.tokens, provider, model, "completion").inc(ex.usage.completion_tokens)
        if ex.offer is not None:
            metrics.child(metrics.cost, provider, model).inc(ex.usage.cost(ex.offer))


def answer_json(served: Served, model: str) -> bytes:
    """A whole JSON answer naming `model` (the canonical one) as its `model`."""
    named = served.parsed.get("model") if served.parsed is not None else None
    return rewrite_json(served.first, model, named if isinstance(named, str) else None)


def _asked_model(body: bytes | bytearray) -> str:
    """The `model` a refused request named, for its access line: "" when the body has none (or is not
    JSON). Only on the error path: a body that parsed has its model taken from the parse."""
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return ""
    model = parsed.get("model") if isinstance(parsed, dict) else None
    return model[:MAX_MODEL_LENGTH] if isinstance(model, str) else ""


class _AbortAnswer(Exception):
    """A binary answer broke mid-way: the handler returns with the answer incomplete, so the server
    drops the connection instead of ending the body cleanly (which would pass a truncated file as whole)."""


def _content_type(headers: dict[bytes, bytes]) -> str:
    return headers.get(b"content-type", b"").decode("latin-1")


def _not_offered(model: str, route: str, offers: tuple[Offer, ...] | None) -> ModelNotFound:
    if offers is None:
        return ModelNotFound(f"The model '{model[:256]}' does not exist on this proxy", param="model")
    return ModelNotFound(
        f"The model '{model[:256]}' is not served on {route} by any provider of this proxy", param="model"
    )


def _request_id(given: bytes | None) -> str:
    if given is not None and len(given) <= 64 and SLUG.match(given.decode("latin-1")):
        return given.decode("latin-1")
    return f"{random.getrandbits(128):032x}"  # as unique as uuid4().hex, without a system call


def _log_line(ex: Exchange, elapsed: float) -> str:
    return orjson.dumps(
        {
            "request_id": ex.request_id,
            "route": ex.route,
            "model": ex.model,
            "provider": ex.provider or None,
            "attempts": len(ex.attempts),
            "tried": [f"{a.provider}:{a.outcome}" for a in ex.attempts],
            "hedge": hedge_outcome(ex.attempts),
            "status": ex.status,
            "outcome": ex.outcome,
            "latency_ms": round(elapsed * 1000, 2),
        }
    ).decode()
