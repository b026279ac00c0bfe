"""Responses API chains: a response's follow-ups go to the provider that created it, or nowhere.

A provider keeps a stored response's state (its conversation, its input items); another provider
does not know its id. So a `POST /v1/responses` with `previous_response_id` is sent only to the
pinned offer (`proxy.runtime.response_pins`), and `GET`/`DELETE /v1/responses/{id}`,
`POST /v1/responses/{id}/cancel` and `GET /v1/responses/{id}/input_items` are forwarded to it as
they are. When that provider cannot serve, the answer is a 503 `pinned_provider_unavailable` that
names it: moving the chain elsewhere would silently lose the conversation.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from proxy.errors import AllOffersFailed, BadRequest, ClientError, UpstreamError
from proxy.failover.classify import is_retryable_status
from proxy.failover.client_request import ClientRequest
from proxy.http.answers import JSON, Headers, client_error, error_body, forwarded_headers, gateway_headers, redact
from proxy.http.gateway import Gateway
from proxy.runtime.response_pins import ResponsePin
from proxy.types import Attempt, Offer, Ranking
from proxy.upstream.answer_model import rewrite_json
from proxy.upstream.client import UpstreamResponse

CHAIN_ROUTE = "/v1/responses/{response_id}"
PINNED_CODE = "pinned_provider_unavailable"
MAX_RESPONSE_ID = 256  # longer ids are never looked up (nor sent to Redis as a key)


@dataclass(frozen=True, slots=True)
class PinnedUnavailable:
    """Why a chained request may not fail over: the response it continues, and its provider."""

    response_id: str
    provider: str
    reason: str = ""  # why it was not even tried (cooling down, gone from the config)
    code: str = PINNED_CODE


class ResponseNotFound(ClientError):
    status = 404
    code = "response_not_found"


async def pinned_ranking(
    gateway: Gateway, request: ClientRequest, offers: tuple[Offer, ...]
) -> tuple[Ranking, PinnedUnavailable] | None:
    """For a `POST /v1/responses` that continues a response (`previous_response_id`): the pinned
    offer alone (none when its provider left the config). None for any other request, which fails
    over freely whatever its `store`."""
    previous = request.body.get("previous_response_id")
    if previous is None:
        return None
    if not isinstance(previous, str) or not previous:
        raise BadRequest("previous_response_id must be a response id", param="previous_response_id")
    pin = await _pin_of(gateway, previous)
    offer = _pinned_offer(gateway, pin, offers)
    if offer is None:
        return Ranking(offers=()), PinnedUnavailable(
            previous, pin.provider, "not configured or not active on this proxy"
        )
    now = time.time()
    if gateway.state.view(offer, now).cooldown_until > now:  # it asked to be left alone until then
        return Ranking(offers=(), cooling=(offer,)), PinnedUnavailable(previous, pin.provider, "cooling down")
    return Ranking(offers=(offer,)), PinnedUnavailable(previous, pin.provider)


def pinned_unavailable(pinned: PinnedUnavailable, exc: AllOffersFailed, seen: str = "") -> tuple[int, bytes, Headers]:
    """503 naming the provider a chain is pinned to, with what it answered (`seen`, else the attempts)."""
    seen = seen or pinned.reason or ", ".join(a.outcome for a in exc.attempts)
    message = (
        f"response '{pinned.response_id[:128]}' was created by provider '{pinned.provider}', which cannot serve "
        f"this follow-up now ({seen}); a Responses API chain stays on the provider that holds its state: "
        "retry later, or start a new chain without previous_response_id"
    )
    body = error_body(message, "api_error", PINNED_CODE, attempts=[a.as_json() for a in exc.attempts])
    headers: Headers = []
    if exc.retry_after_s is not None:
        headers.append((b"retry-after", str(max(1, round(exc.retry_after_s + 0.499))).encode()))
    return 503, body, headers


async def _pin_of(gateway: Gateway, response_id: str, param: str | None = "previous_response_id") -> ResponsePin:
    pin = await gateway.pins.lookup(response_id) if len(response_id) <= MAX_RESPONSE_ID else None
    if pin is None:
        which = "Previous response" if param else "Response"
        raise ResponseNotFound(
            f"{which} with id '{response_id[:128]}' not found: this proxy did not create it, or its pin "
            f"expired (pins are kept {duration_words(gateway.settings.response_pin_ttl_s)})",
            param=param,
        )
    return pin


def duration_words(seconds: float) -> str:
    """A duration as a person writes it: `30 days`, `12 hours`, `90 minutes`, `45 s`."""
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size and (seconds % size == 0 or seconds >= 2 * size):
            count = seconds / size
            amount = f"{count:g}" if count == int(count) else f"{count:.1f}"
            return f"{amount} {unit}{'' if amount == '1' else 's'}"
    return f"{seconds:g} s"


def _pinned_offer(gateway: Gateway, pin: ResponsePin, offers: tuple[Offer, ...]) -> Offer | None:
    """The pinned provider's offer of the requested model, else of the pinned model; None when the
    provider is gone from the config."""
    same = [o for o in offers if o.provider_slug == pin.provider]
    if not same:
        same = [o for o in gateway.catalog.lookup(pin.model_id, "responses") or () if o.provider_slug == pin.provider]
    if same:
        exact = [o for o in same if o.provider_model_id == pin.provider_model_id]
        return (exact or same)[0]
    provider = gateway.config.provider(pin.provider)
    if provider is None or not provider.is_active:
        return None
    return Offer(pin.model_id, provider.slug, pin.provider_model_id, provider.base_url, provider.api_key_env)


async def forward_to_pinned(request: Request) -> Response:
    """GET/DELETE a response, cancel it, or list its input items, at the provider that created it.
    The provider's answer is passed through (its key redacted); a failure is a 503 naming it.
    Counted in `gatewayz_requests_total` under the route `/v1/responses/{response_id}`."""
    from proxy.http.handler import _request_id

    gateway: Gateway = request.app.state.gateway
    request_id = _request_id(request.headers.get("x-request-id", "").encode("latin-1"))
    model = ""
    try:
        request.app.state.handler.authorize(dict(request.scope["headers"]))  # the proxy's client keys
        pin = await _pin_of(gateway, request.path_params["response_id"], param=None)
        model = pin.model_id
        response, outcome = await _forward(request, gateway, pin, request_id)
    except ClientError as exc:
        status, body = client_error(exc)
        response = Response(body, status, headers={"x-request-id": request_id}, media_type="application/json")
        outcome = exc.code
    metrics = gateway.metrics
    metrics.child(metrics.requests, CHAIN_ROUTE, metrics.model(model), outcome).inc()
    return response


async def _forward(request: Request, gateway: Gateway, pin: ResponsePin, request_id: str) -> tuple[Response, str]:
    response_id = request.path_params["response_id"]
    provider = gateway.config.provider(pin.provider)
    offer = _pinned_offer(gateway, pin, ())
    if provider is None or offer is None:
        return _unavailable(response_id, pin, "not configured or not active on this proxy", request_id), PINNED_CODE
    query = f"?{request.url.query}" if request.url.query else ""
    url = provider.base_url + request.url.path.removeprefix("/v1") + query
    headers = {"accept": "application/json", "x-request-id": request_id}
    if provider.api_key:
        headers["authorization"] = f"Bearer {provider.api_key.reveal()}"
    try:
        async with asyncio.timeout(gateway.settings.first_byte_timeout_s):
            upstream = await gateway.client.send(url, headers, b"", method=request.method)
            try:
                body = await upstream.read()
            finally:
                upstream.close()
    except (UpstreamError, TimeoutError) as exc:
        reason = exc.code if isinstance(exc, UpstreamError) else "first_byte_timeout"
        return _unavailable(response_id, pin, reason, request_id), PINNED_CODE
    if is_retryable_status(upstream.status) and upstream.status != 404:
        return _unavailable(response_id, pin, str(upstream.status), request_id), PINNED_CODE
    if request.method == "DELETE" and upstream.status < 300:
        await gateway.pins.forget(response_id)
    outcome = "ok" if upstream.status < 300 else f"upstream_{upstream.status}"
    if upstream.status < 300 and gateway.settings.answer_model == "canonical":
        body = rewrite_json(body, pin.model_id)  # the response object names its canonical model, as when made
    return _passed_through(request.app.state.handler.provider_keys, upstream, body, offer, request_id), outcome


def _unavailable(response_id: str, pin: ResponsePin, reason: str, request_id: str) -> Response:
    status, body, _ = pinned_unavailable(PinnedUnavailable(response_id, pin.provider), AllOffersFailed([]), reason)
    return Response(body, status, headers={"x-request-id": request_id}, media_type="application/json")


def _passed_through(
    keys: tuple[bytes, ...], upstream: UpstreamResponse, body: bytes, offer: Offer, request_id: str
) -> Response:
    status = upstream.status
    headers = [(k, redact(v, keys)) for k, v in forwarded_headers(upstream.headers)]
    headers += gateway_headers(offer, [Attempt(offer.provider_slug, offer.provider_model_id, "ok", 0.0)], request_id)
    if not any(k == b"content-type" for k, _ in headers):
        headers.append(JSON)
    response = Response(redact(body, keys), status)
    response.raw_headers = [*response.raw_headers, *headers]
    return response
