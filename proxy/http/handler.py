"""The hot path: one proxied request, in plain ASGI.

read the body (bounded) -> parse once -> look up and rank offers -> attempt loop -> answer.
It touches neither Postgres nor Redis (a stored response's follow-up reads its pin, from process
memory or Redis; a key's budget is checked against the in-process view, `proxy.billing.spend`).
What happens is written into the request's record (`proxy.failover.record`),
which `proxy.failover.accounting` reads once when the request ends. A client that disconnects after
sending its body cancels the request at once, which closes the upstream response in the attempt
loop's or relay's `finally`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from functools import partial

import orjson

from proxy.billing.usage_accounting import answer_with_cost, priced_usage
from proxy.errors import AllOffersFailed, ClientDisconnected, ClientError, ShuttingDown, UpstreamError, UpstreamStatus
from proxy.failover.accounting import request_cost
from proxy.failover.attempts import Call, Served, run_attempts
from proxy.failover.client_request import MAX_MODEL_LENGTH, ClientRequest, require_known_providers
from proxy.failover.endpoints import PROXIED, Endpoint, ForwardRequest, match
from proxy.failover.fit import prompt_characters
from proxy.failover.judge.verdict import answer_finish_reason
from proxy.failover.model_fallbacks import not_offered, serve_request
from proxy.failover.record import Phase, RequestRecord
from proxy.failover.usage_ask import UsageAsk
from proxy.http.answers import (
    JSON,
    Headers,
    forwarded_headers,
    gateway_headers,
    labelled_json,
    redact,
    usage_headers,
)
from proxy.http.api_errors import ErrorAnswers, errors_for
from proxy.http.body import read_body
from proxy.http.chain import (
    PinnedCall,
    PinnedUnavailable,
    pin_of,
    pinned_ranking,
    pinned_unavailable,
    previous_response,
)
from proxy.http.disconnect import DisconnectWatch
from proxy.http.gateway import Gateway
from proxy.http.identity import authorize, request_id
from proxy.http.relay import relay_bytes, relay_stream
from proxy.provider_api import ANTHROPIC_HEADERS
from proxy.runtime.live import LiveConfig
from proxy.runtime.response_pins import ResponsePin
from proxy.types import NO_PREFERENCES, Offer, Ranking, Receive, Scope, Send
from proxy.upstream.answer_model import StreamRewrite, rewrite_json
from proxy.upstream.usage import Usage, estimated_usage, stream_usage
from proxy.upstream.usage_stream import CONTENT_VALUE, TEXT_VALUE, UsageStage

# the client's headers passed on to providers (Anthropic's only to Anthropic-speaking offers: `Dialect.drops`)
FORWARDED = frozenset(
    {b"accept", b"user-agent", b"http-referer", b"x-title", b"openai-beta", *(h.encode() for h in ANTHROPIC_HEADERS)}
)


class ProxyHandler:
    """Serves every proxied endpoint (`proxy.failover.endpoints.PROXIED`) in plain ASGI."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, endpoint: Endpoint | None = None, response_id: str = ""
    ) -> None:
        """Serve one request to `endpoint` (found from the scope when not given: the app has found it)."""
        if endpoint is None:
            endpoint, response_id = _endpoint(scope)
        headers = dict(scope["headers"])
        live = self.gateway.live.current
        accounting = self.gateway.accounting
        ident = request_id(headers.get(b"x-request-id"))
        record = RequestRecord(
            endpoint.label or endpoint.route, ident, on_failure=accounting.attempt_failed, measured=endpoint.measured
        )
        task = asyncio.current_task()
        watcher: DisconnectWatch | None = None
        try:
            record.identified(authorize(live, headers))
            self.gateway.spend.check(record.key_name)  # over budget: refused before any provider is asked
            body: bytes | bytearray = b""
            if endpoint.form != "none":
                settings = live.settings
                upload = endpoint.form != "json"
                body = await read_body(receive, headers, settings.max_body_bytes, settings.deadline_s, upload)
            assert task is not None
            watcher = DisconnectWatch(receive, task, record)
            pin = (response_id, await pin_of(self.gateway.pins, response_id, param=None)) if endpoint.pinned else None
            call = self._call(record, live, endpoint, scope, body=body, headers=headers, pin=pin)
            await self._serve(record, call, send)
        except ClientError as exc:
            record.answered(exc.status, exc.code)
            answer = errors_for(endpoint).client_error(exc, record.request_id)  # our errors in the client's API
            await self._reply_error(record, send, *answer, list(exc.headers))
        except ClientDisconnected:
            record.client_left()
        except _AbortAnswer:
            pass  # returning with the answer incomplete: the server drops the connection
        except asyncio.CancelledError:
            if task is None:
                raise
            task.uncancel()
            if record.phase is not Phase.DISCONNECTED:  # only the server cancels otherwise (shutdown)
                await self._end_at_shutdown(record, send, errors_for(endpoint))
        finally:
            if watcher is not None:
                watcher.cancel()
            accounting.request_ended(record)

    def _call(
        self,
        record: RequestRecord,
        live: LiveConfig,
        endpoint: Endpoint,
        scope: Scope,
        *,
        body: bytes | bytearray,
        headers: dict[bytes, bytes],
        pin: tuple[str, ResponsePin] | None,
    ) -> Call:
        """The request as it will be sent: parsed (or, for a stored response's follow-up, named by its pin)."""
        preferred = headers.get(b"x-gatewayz-provider")
        provider = preferred.decode("latin-1") if preferred is not None else None
        request: ForwardRequest
        path = endpoint.upstream
        if pin is not None:
            request = PinnedCall(*pin)
            query = scope.get("query_string", b"")
            path = scope["path"].removeprefix("/v1") + (f"?{query.decode('latin-1')}" if query else "")
        else:
            try:
                request = endpoint.parse(body, headers, provider)
                if request.prefs is not NO_PREFERENCES:
                    require_known_providers(request.prefs, provider, live.provider_keys)
            except ClientError:
                record.named(_asked_model(body))
                raise
            record.named(request.model)
        forward = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers.items() if k in FORWARDED}
        if endpoint.form == "none":
            forward["accept"] = "application/json"
        else:
            forward["content-type"] = endpoint.content_type(headers)
        forward["x-request-id"] = record.request_id
        deadline = asyncio.get_running_loop().time() + live.settings.deadline_s
        return Call(request, endpoint, live, forward, deadline, path, endpoint.method)

    async def _serve(self, record: RequestRecord, call: Call, send: Send) -> None:
        pinned = await self._pinned(record, call, call.request) if call.endpoint.pins or call.endpoint.pinned else None
        serving: Awaitable[Served]
        if pinned is not None:  # a stored response's chain stays on its provider: no other offer, no fallback
            ranking, unavailable = pinned
            serving = run_attempts(self.gateway.context, call, ranking, record)
        else:
            unavailable = None
            serving = serve_request(self.gateway.router, call, record)
        try:
            served = await serving
        except AllOffersFailed as exc:
            if exc.refusal is not None:  # every offer refused the request itself: the first refusal, unchanged
                await self._pass_through(record, call, send, exc.refusal)
                return
            if unavailable is None:
                status, payload, extra = errors_for(call.endpoint).all_failed(exc, record.model, record.request_id)
            else:
                status, payload, extra = pinned_unavailable(unavailable, exc)
            record.answered(status, exc.code if unavailable is None else unavailable.code)
            await self._reply_error(record, send, status, payload, extra)
            return
        except UpstreamStatus as exc:  # final: the client's own mistake (or a pinned 404), passed through unchanged
            await self._pass_through(record, call, send, exc)
            return
        await self._answer(record, call, served, send)

    async def _pinned(
        self, record: RequestRecord, call: Call, request: ForwardRequest
    ) -> tuple[Ranking, PinnedUnavailable] | None:
        """The pinned offer of a request that continues a stored response; None for any other request."""
        gateway = self.gateway
        offers: tuple[Offer, ...] = ()
        if isinstance(request, PinnedCall):
            pin, response_id = request.pin, request.response_id
        elif call.endpoint.pins and isinstance(request, ClientRequest):
            previous = previous_response(request.body)
            if previous is None:
                return None
            found = gateway.catalog.lookup(request.model, call.endpoint.kind)
            if not found:
                raise not_offered(request.model, call.endpoint, found is not None)
            pin = await pin_of(gateway.pins, previous, param="previous_response_id")
            response_id, offers = previous, found
        else:
            return None
        record.routing(request.model, offers[0].model_id if offers else pin.model_id, stream=request.stream)
        return pinned_ranking(
            gateway.state, gateway.catalog, call.live.config, pin, response_id=response_id, offers=offers
        )

    async def _answer(self, record: RequestRecord, call: Call, served: Served, send: Send) -> None:
        endpoint, request = call.endpoint, call.request
        status = served.response.status
        headers = forwarded_headers(served.response.headers)
        headers += gateway_headers(served.offer, record.attempt_count, record.request_id)
        if endpoint.pins:
            await self._pin(served)
        if endpoint.answer == "binary":
            await self._relay_binary(record, call, served, send, status=status, headers=headers)
            return
        canonical = call.live.settings.answer_model == "canonical"
        if not request.stream:
            record.answered(status, "ok", endpoint.usage(served.parsed))
            record.ended_because(answer_finish_reason(served.parsed))
            cost = request_cost(record)
            headers += usage_headers(record.usage, cost)
            body = _whole_answer(call, served, headers, record.model if canonical else None)
            if _accounting(call) and served.parsed is not None:  # OpenRouter's usage accounting
                body = answer_with_cost(body, record.usage, cost)
            headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            if isinstance(request, PinnedCall) and endpoint.method == "DELETE":
                await self.gateway.pins.forget(request.response_id)
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        record.committed(status)
        watch, translation = endpoint.relay_parts(request, served.dialect)  # the offer's API, the client's
        usage = _usage_stage(call, served)
        error: UpstreamError | None = None
        try:
            error = await relay_stream(
                send,
                served.response,
                served.first,
                idle_timeout_s=call.live.settings.stream_idle_timeout_s,
                watch=watch,
                on_final=record.finished,
                translation=translation,
                rewrite=StreamRewrite.needed(served.first, record.model) if canonical else None,  # the canonical model
                usage=usage,
            )
        finally:
            record.reported(stream_usage(watch) or _estimated(request, usage))
            record.ended_because(getattr(watch, "finish_reason", None))  # chat-like streams' watch reads it
        if error is not None:
            record.stream_broke(error)
        record.relayed("ok" if error is None else error.outcome)

    async def _pin(self, served: Served) -> None:
        """A created response is pinned to its offer before the client can name it in a follow-up."""
        ident = served.response_id
        if ident is None and served.parsed is not None:
            found = served.parsed.get("id")
            ident = found if isinstance(found, str) else None
        if ident is not None:
            await self.gateway.pins.record(ident, served.offer)

    async def _relay_binary(
        self, record: RequestRecord, call: Call, served: Served, send: Send, *, status: int, headers: Headers
    ) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        record.committed(status, events=False)
        try:
            await relay_bytes(send, served.response, served.first, call.live.settings.stream_idle_timeout_s)
        except UpstreamError as exc:
            record.relayed(exc.outcome)
            raise _AbortAnswer from exc  # the server drops the connection: the client sees a cut body
        record.finished()
        record.relayed("ok")

    async def _pass_through(self, record: RequestRecord, call: Call, send: Send, exc: UpstreamStatus) -> None:
        # a provider that echoes the key we sent it (in a 400 body or a header) must not hand it to the client
        secrets = call.live.secrets
        offer = record.offer_of(exc) or record.last_offer
        body = call.endpoint.refusal_for(offer, exc.status, redact(exc.body, secrets))
        headers = [(k, redact(v, secrets)) for k, v in forwarded_headers(exc.headers)]
        headers += gateway_headers(offer, record.attempt_count, record.request_id)
        headers.append((b"content-length", str(len(body)).encode()))
        record.answered(exc.status, f"upstream_{exc.status}")
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _reply_error(self, record: RequestRecord, send: Send, status: int, body: bytes, extra: Headers) -> None:
        """An error answer of ours (the record already says what it is)."""
        headers = [JSON, (b"content-length", str(len(body)).encode()), *extra]
        headers += gateway_headers(None, record.attempt_count, record.request_id)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _end_at_shutdown(self, record: RequestRecord, send: Send, errors: ErrorAnswers) -> None:
        """End an answer the server stopped waiting for: a committed stream gets the error event (and
        no `[DONE]`), an answer not yet begun a 503 (a binary one under way is already finished: left
        incomplete, the server drops the connection); either way it is counted and logged as such."""
        error = ShuttingDown("the proxy shut down before this answer was complete")
        was = record.shut_down(error.code)
        if was is Phase.STREAMING:
            event = errors.stream_error(str(error), error.code)
            await send({"type": "http.response.body", "body": event, "more_body": False})
        elif was in (Phase.RECEIVING, Phase.ROUTING):
            body = errors.server_error(str(error), error.code, record.request_id)
            await self._reply_error(record, send, record.status, body, [])


def _whole_answer(call: Call, served: Served, headers: Headers, canonical: str | None) -> bytes:
    """A whole answer's body as the client gets it, naming the `canonical` model when given (None: as
    the provider named it); `headers` get its length and, when it is JSON, the JSON content type."""
    body = served.first
    if served.parsed is not None:
        headers[:] = labelled_json(headers)
        if canonical is not None:
            body = answer_json(served, canonical)
    elif call.endpoint.answer == "raw":  # a stored response, as its provider keeps it (never our key)
        body = redact(body, call.live.secrets)
        if canonical is not None and served.response.status < 300:
            body = rewrite_json(body, canonical)  # it names its canonical model, as when it was made
        if not any(k == b"content-type" for k, _ in headers):
            headers.append(JSON)
    return body


def _accounting(call: Call) -> bool:
    """Did the client ask for OpenRouter's usage accounting, on an endpoint whose usage it accounts?"""
    request = call.request
    return call.endpoint.usage_ask and isinstance(request, ClientRequest) and request.usage_accounting


def _usage_stage(call: Call, served: Served) -> UsageStage | None:
    """The relay's usage stage (`proxy.upstream.usage_stream`): only for a stream the proxy asked for
    usage (or would have, but the offer refuses: its text is counted), or whose client asked for
    OpenRouter's usage accounting (in the offer's own API: a translated stream has the dialect's usage)."""
    accounting = _accounting(call) and served.dialect is None
    if served.usage_ask is UsageAsk.NONE and not accounting:
        return None
    account = partial(priced_usage, prices=served.offer.prices) if accounting else None
    value = TEXT_VALUE if call.endpoint.kind == "completions" else CONTENT_VALUE
    return UsageStage(
        strip=served.usage_ask is UsageAsk.ASKED and served.dialect is None,
        account=account,
        all_text=served.usage_ask is UsageAsk.REFUSED,  # no usage will come: the text is all there is
        value=value,
    )


def _estimated(request: ForwardRequest, usage: UsageStage | None) -> Usage | None:
    """A stream's usage counted by the proxy (`proxy.upstream.usage.estimated_usage`), when the proxy
    watched its text (it asked for usage, and none came)."""
    if usage is None or not isinstance(request, ClientRequest):
        return None
    return estimated_usage(prompt_characters(request.body), usage.text_bytes)


def answer_json(served: Served, model: str) -> bytes:
    """A whole JSON answer naming `model` (the canonical one) as its `model`."""
    named = served.parsed.get("model") if served.parsed is not None else None
    return rewrite_json(served.first, model, named if isinstance(named, str) else None)


def _endpoint(scope: Scope) -> tuple[Endpoint, str]:
    endpoint = PROXIED.get((scope["method"], scope["path"]))
    if endpoint is not None:
        return endpoint, ""
    found = match(scope["method"], scope["path"])
    assert found is not None, "the app sends only proxied endpoints here"
    return found


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
