"""Responses API chains: a response's follow-ups go to the provider that created it, or nowhere.

A provider keeps a stored response's state (its conversation, its input items); another provider
does not know its id. So a `POST /v1/responses` with `previous_response_id`, and `GET`/`DELETE
/v1/responses/{id}`, `POST /v1/responses/{id}/cancel` and `GET /v1/responses/{id}/input_items`, go
only to the pinned offer (`proxy.runtime.response_pins`), through the same attempt path as every
request (one offer, no fallback): its failure is judged, counted and cooled down like any other.
When that provider cannot serve, the answer is a 503 `pinned_provider_unavailable` that names it:
moving the chain elsewhere would silently lose the conversation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from proxy.config import Config
from proxy.errors import AllOffersFailed, BadRequest, ClientError
from proxy.http.answers import Headers, error_body
from proxy.runtime.catalog import Catalog
from proxy.runtime.response_pins import ResponsePin, ResponsePins
from proxy.runtime.state import RuntimeState
from proxy.types import NO_PREFERENCES, Offer, Preferences, Ranking

PINNED_CODE = "pinned_provider_unavailable"
MAX_RESPONSE_ID = 256  # longer ids are never looked up (nor sent to Redis as a key)


@dataclass(frozen=True, slots=True)
class PinnedUnavailable:
    """Why a chained request may not fail over: the response it continues, and its provider."""

    response_id: str
    provider: str
    reason: str = ""  # why it was not even tried (cooling down, gone from the config)
    code: str = PINNED_CODE


@dataclass(frozen=True, slots=True)
class PinnedCall:
    """A follow-up that names a stored response in its path (`GET /v1/responses/{id}`...): no body."""

    response_id: str
    pin: ResponsePin
    stream: bool = False
    prefs: Preferences = NO_PREFERENCES

    @property
    def model(self) -> str:
        return self.pin.model_id

    def encode_for(self, provider_model_id: str) -> bytes:
        return b""


class ResponseNotFound(ClientError):
    status = 404
    code = "response_not_found"


async def pin_of(pins: ResponsePins, response_id: str, *, param: str | None) -> ResponsePin:
    """Where `response_id` was created; `ResponseNotFound` when this proxy never made it (or forgot)."""
    pin = await pins.lookup(response_id) if len(response_id) <= MAX_RESPONSE_ID else None
    if pin is None:
        named = "Previous response" if param else "Response"
        raise ResponseNotFound(
            f"{named} with id '{response_id[:128]}' not found: this proxy did not create it, or its pin "
            f"expired (pins are kept {duration_words(pins.ttl_s)})",
            param=param,
        )
    return pin


def previous_response(body: dict[str, object]) -> str | None:
    """A `POST /v1/responses` body's `previous_response_id`: None when absent, else a non-empty string."""
    previous = body.get("previous_response_id")
    if previous is None:
        return None
    if not isinstance(previous, str) or not previous:
        raise BadRequest("previous_response_id must be a response id", param="previous_response_id")
    return previous


def pinned_ranking(
    state: RuntimeState,
    catalog: Catalog,
    config: Config,
    pin: ResponsePin,
    *,
    response_id: str,
    offers: tuple[Offer, ...],
) -> tuple[Ranking, PinnedUnavailable]:
    """The pinned offer alone (none when its provider left the config; cooling when it asked to be
    left alone), with the 503's reason should it not serve."""
    offer = pinned_offer(catalog, config, pin, offers)
    if offer is None:
        gone = PinnedUnavailable(response_id, pin.provider, "not configured or not active on this proxy")
        return Ranking(offers=()), gone
    now = time.time()
    if state.view(offer, now).cooldown_until > now:  # it asked to be left alone until then
        return Ranking(offers=(), cooling=(offer,)), PinnedUnavailable(response_id, pin.provider, "cooling down")
    return Ranking(offers=(offer,)), PinnedUnavailable(response_id, pin.provider)


def pinned_offer(catalog: Catalog, config: Config, pin: ResponsePin, offers: tuple[Offer, ...]) -> Offer | None:
    """The pinned provider's offer of the requested model, else of the pinned model; None when the
    provider is gone from the config."""
    same = [o for o in offers if o.provider_slug == pin.provider]
    if not same:
        same = [o for o in catalog.lookup(pin.model_id, "responses") or () if o.provider_slug == pin.provider]
    if same:
        exact = [o for o in same if o.provider_model_id == pin.provider_model_id]
        return (exact or same)[0]
    provider = config.provider(pin.provider)
    if provider is None or not provider.is_active:
        return None
    return Offer(pin.model_id, provider.slug, pin.provider_model_id, provider.base_url, provider.api_key_env)


def pinned_unavailable(pinned: PinnedUnavailable, exc: AllOffersFailed) -> tuple[int, bytes, Headers]:
    """503 naming the provider a chain is pinned to, with what it answered (else why it was not tried)."""
    seen = pinned.reason or ", ".join(a.outcome for a in exc.attempts)
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


def duration_words(seconds: float) -> str:
    """A duration as a person writes it: `30 days`, `12 hours`, `90 minutes`, `45 s`."""
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size and (seconds % size == 0 or seconds >= 2 * size):
            count = seconds / size
            amount = f"{count:g}" if count == int(count) else f"{count:.1f}"
            return f"{amount} {unit}{'' if amount == '1' else 's'}"
    return f"{seconds:g} s"
