"""What proxies and the health worker say to each other, and where: channel names, keys, payloads.

    Redis pub/sub  {prefix}:events:rankings   RankingEvent   worker -> proxies: re-read these models
    Redis pub/sub  {prefix}:events:state      StateEvent     proxy -> proxies: a cooldown or an opened circuit
    Redis hash     {prefix}:offers            model -> {"version", "offers": [ranked offers]}
    Redis hash     {prefix}:state             "kind|provider|model" -> the latest StateEvent (catch-up on connect)
    Redis string   {prefix}:response:{id}     ResponsePin    a response id -> the offer that made it (with a TTL)
    Redis string   {prefix}:catalog           CatalogSnapshot  a proxy's last known catalog (also a file, no TTL)
    Postgres       NOTIFY gatewayz_rankings   RankingEvent   the same, for deployments without Redis
    Postgres       NOTIFY gatewayz_state      StateEvent     the same, for deployments without Redis

Payloads are JSON. A `RankingEvent` with `models = None` means "every model" (a NOTIFY payload is
limited to 8000 bytes). Every decoder raises `ValueError` on a payload it cannot use, so a listener
drops one bad message and carries on. Pure functions only: the I/O lives in the modules that use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.types import ALL_ENDPOINTS, Health, Offer, StateEvent

PG_RANKINGS_CHANNEL = "gatewayz_rankings"
PG_STATE_CHANNEL = "gatewayz_state"
NOTIFY_LIMIT_BYTES = 7900
STATE_KINDS = ("cooldown", "circuit_open")


def rankings_channel(prefix: str) -> str:
    return f"{prefix}:events:rankings"


def state_channel(prefix: str) -> str:
    return f"{prefix}:events:state"


def offers_key(prefix: str) -> str:
    return f"{prefix}:offers"


def state_key(prefix: str) -> str:
    return f"{prefix}:state"


def catalog_key(prefix: str) -> str:
    return f"{prefix}:catalog"


def response_pin_key(prefix: str, response_id: str) -> str:
    return f"{prefix}:response:{response_id}"


def state_field(event: StateEvent) -> str:
    """An event's field in the state hash: the latest event of a kind for an offer replaces the last."""
    return f"{event.kind}|{event.provider}|{event.provider_model_id}"


@dataclass(frozen=True, slots=True)
class RankingEvent:
    """The health of these models' offers changed; `version` is the writer's wall clock after commit."""

    models: tuple[str, ...] | None
    version: float


def encode_ranking_event(event: RankingEvent, *, limit: int | None = None) -> bytes:
    """The JSON payload; over `limit` bytes it names no model, which means every model."""
    models = list(event.models) if event.models is not None else None
    payload = orjson.dumps({"models": models, "version": event.version})
    if limit is not None and len(payload) > limit:
        payload = orjson.dumps({"models": None, "version": event.version})
    return payload


def decode_ranking_event(data: bytes | str) -> RankingEvent:
    raw = _object(data)
    models, version = raw.get("models"), raw.get("version")
    if models is not None and not (isinstance(models, list) and all(isinstance(m, str) for m in models)):
        raise ValueError("ranking event: models must be a list of strings or null")
    return RankingEvent(tuple(models) if models is not None else None, _number(version, "version"))


def encode_state_event(event: StateEvent, origin: str) -> bytes:
    return orjson.dumps(
        {
            "kind": event.kind,
            "provider": event.provider,
            "provider_model_id": event.provider_model_id,
            "until": event.until,
            "origin": origin,
        }
    )


def decode_state_event(data: bytes | str) -> tuple[StateEvent, str]:
    """The event and the id of the instance that sent it."""
    raw = _object(data)
    kind, provider, origin = raw.get("kind"), raw.get("provider"), raw.get("origin")
    model = raw.get("provider_model_id")
    if kind not in STATE_KINDS:
        raise ValueError(f"state event: unknown kind {kind!r}")
    if not isinstance(provider, str) or not provider or not isinstance(model, str) or not isinstance(origin, str):
        raise ValueError("state event: provider, provider_model_id and origin must be strings")
    return StateEvent(kind, provider, model, _number(raw.get("until"), "until")), origin


def offer_to_json(offer: Offer) -> dict[str, Any]:
    return {
        "model_id": offer.model_id,
        "provider_slug": offer.provider_slug,
        "provider_model_id": offer.provider_model_id,
        "base_url": offer.base_url,
        "api_key_env": offer.api_key_env,
        "priority": offer.priority,
        "health": offer.health.value,
        "provider_health": offer.provider_health.value,
        "response_time_ms": offer.response_time_ms,
        "pricing_prompt": offer.pricing_prompt,
        "pricing_completion": offer.pricing_completion,
        "supports_streaming": offer.supports_streaming,
        "offer_id": offer.offer_id,
        "endpoints": sorted(offer.endpoints),
        "pricing_request": offer.pricing_request,
        "context_length": offer.context_length,
        "max_completion_tokens": offer.max_completion_tokens,
        "supported_parameters": _sorted(offer.supported_parameters),
        "input_modalities": _sorted(offer.input_modalities),
        "pricing_cached_prompt": offer.pricing_cached_prompt,
    }


def _sorted(values: frozenset[str] | None) -> list[str] | None:
    return None if values is None else sorted(values)


def _frozen(values: object) -> frozenset[str] | None:
    if values is None:
        return None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError("cached offer: a capability list must be a list of strings or null")
    return frozenset(values)


def offer_from_json(raw: object) -> Offer:
    """An offer from the shared cache; capabilities a writer did not know yet stay unknown (None)."""
    if not isinstance(raw, dict):
        raise ValueError("cached offer: expected an object")
    try:
        return Offer(
            **{
                **raw,
                "health": Health(raw["health"]),
                "provider_health": Health(raw["provider_health"]),
                "supported_parameters": _frozen(raw.get("supported_parameters")),
                "input_modalities": _frozen(raw.get("input_modalities")),
                "endpoints": frozenset(raw.get("endpoints", ALL_ENDPOINTS)),
            }
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"cached offer: {exc}") from None


def encode_cached_offers(offers: Sequence[Offer], version: float) -> bytes:
    """One model's entry in the shared cache: its ranked offers and when they were written."""
    return orjson.dumps({"version": version, "offers": [offer_to_json(o) for o in offers]})


def decode_cached_offers(data: bytes | str) -> tuple[list[Offer], float]:
    raw = _object(data)
    offers = raw.get("offers")
    if not isinstance(offers, list):
        raise ValueError('cached offers: expected an "offers" list')
    return [offer_from_json(o) for o in offers], _number(raw.get("version"), "version")


def _object(data: bytes | str) -> dict[str, Any]:
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError("expected a JSON object")
    return raw


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


@dataclass(frozen=True, slots=True)
class CatalogSnapshot:
    """A proxy's last known catalog: the offers of every model as the catalog held them (before the
    config's hosts and keys are applied), the providers it marked inactive, and `version`, the wall
    clock when it was current. `source` says where it was read back from (`disk` or `redis`);
    `database` names the database it came from (`proxy.store.database.database_fingerprint`)."""

    offers: dict[str, list[Offer]]
    retired: frozenset[str]
    version: float
    source: str = ""
    database: str = ""


def encode_catalog_snapshot(snapshot: CatalogSnapshot) -> bytes:
    offers = {model: [offer_to_json(o) for o in found] for model, found in sorted(snapshot.offers.items())}
    what = {"version": snapshot.version, "database": snapshot.database, "retired": sorted(snapshot.retired)}
    return orjson.dumps({**what, "offers": offers})


def decode_catalog_snapshot(data: bytes | str, source: str) -> CatalogSnapshot:
    raw = _object(data)
    offers, retired = raw.get("offers"), raw.get("retired", [])
    if not isinstance(offers, dict) or not all(isinstance(v, list) for v in offers.values()):
        raise ValueError('catalog snapshot: expected an "offers" object of lists')
    if not isinstance(retired, list) or not all(isinstance(r, str) for r in retired):
        raise ValueError('catalog snapshot: "retired" must be a list of provider slugs')
    database = raw.get("database", "")
    if not isinstance(database, str):
        raise ValueError('catalog snapshot: "database" must be a string')
    decoded = {str(model): [offer_from_json(o) for o in found] for model, found in offers.items()}
    return CatalogSnapshot(decoded, frozenset(retired), _number(raw.get("version"), "version"), source, database)
