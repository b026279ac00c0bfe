"""The admin views of SPEC section 6, from this instance's catalog and runtime state (no I/O).

All behind `Authorization: Bearer $FAILOVER_ADMIN_TOKEN`; with no token configured the admin API is
refused with 403 and a message that says how to enable it. Provider keys are never shown: only the
name of the variable that holds one, and whether it is set.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy.failover.ranking import offer_health, rank_offers
from proxy.http.answers import error_body
from proxy.http.gateway import Gateway
from proxy.http.identity import bearer_token
from proxy.runtime.first_output import learned_json
from proxy.types import CircuitState, Health, Offer, RuntimeView


def refusal(gateway: Gateway, request: Request) -> Response | None:
    token = gateway.config.admin_token
    if token is None:
        body = error_body(
            "the admin API is disabled: set FAILOVER_ADMIN_TOKEN and send it as Authorization: Bearer <token>",
            "permission_error",
            "admin_disabled",
        )
        return Response(body, status_code=403, media_type="application/json")
    presented = bearer_token(request.headers.get("authorization", "").encode("latin-1"))
    if not hmac.compare_digest(presented, token.reveal().encode()):
        body = error_body("invalid admin token", "authentication_error", "invalid_admin_token")
        return Response(body, status_code=401, media_type="application/json")
    return None


def _ranked(gateway: Gateway, offers: tuple[Offer, ...]) -> tuple[list[Offer], dict[tuple[str, str], RuntimeView]]:
    now = time.time()
    views = gateway.state.views(offers, now)
    ranking = rank_offers(offers, strategy=gateway.settings.strategy, runtime=views, now=now)
    return [*ranking.offers, *ranking.cooling], views


def _ms(value: float | None) -> float | None:
    """A latency for people: a tenth of a millisecond is precision enough (an EWMA has no more)."""
    return None if value is None else round(value, 1)


def _capabilities(offer: Offer) -> dict[str, Any]:
    """What routing knows the offer can do (None = unknown)."""

    def words(values: frozenset[str] | None) -> list[str] | None:
        return None if values is None else sorted(values)

    return {
        "context_length": offer.context_length,
        "max_completion_tokens": offer.max_completion_tokens,
        "supported_parameters": words(offer.supported_parameters),
        "input_modalities": words(offer.input_modalities),
    }


def _order_entry(gateway: Gateway, position: int, offer: Offer, view: RuntimeView) -> dict[str, Any]:
    return {
        "priority": position,
        "provider": offer.provider_slug,
        "provider_model_id": offer.provider_model_id,
        "api": offer.api,
        "health": offer_health(offer, view).value,
        "catalog_health": offer.effective_health.value,
        "circuit": view.circuit.value,
        "cooling_down_s": round(max(0.0, view.cooldown_until - time.time()), 1),
        "response_time_ms": _ms(view.latency_ms if view.latency_ms is not None else offer.response_time_ms),
        "pricing_prompt": offer.pricing_prompt,
        "pricing_completion": offer.pricing_completion,
        "pricing_cached_prompt": offer.pricing_cached_prompt,
        "capabilities": _capabilities(offer),
        "ranked_behind_s": round(max(0.0, view.slow_until - time.time()), 1),
        "first_output": learned_json(gateway.state.first_output, offer.key, gateway.settings.first_byte_timeout_s),
    }


def _recommendation(order: list[dict[str, Any]]) -> str:
    healthy = [
        o for o in order if o["health"] != Health.UNHEALTHY.value and o["circuit"] != "open" and not o["cooling_down_s"]
    ]
    if not order:
        return "no active offer: run `failover sync` or add [[models]] offers to the config"
    if not healthy:
        return "no offer is usable now (unhealthy, open or cooling down): check the providers; they are still tried"
    if len(healthy) == 1:
        return f"only {healthy[0]['provider']} is usable now: add another provider for failover"
    return f"{healthy[0]['provider']} first, {len(healthy) - 1} usable fallback(s)"


async def failover_status(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    if (refused := refusal(gateway, request)) is not None:
        return refused
    models = []
    for model, offers in sorted(gateway.catalog.offers().items()):
        ranked, _ = _ranked(gateway, offers)
        slugs = [o.provider_slug for o in ranked]
        models.append(
            {
                "model": model,
                "providers_count": len(slugs),
                "primary": slugs[0] if slugs else None,
                "fallback": slugs[1:],
                "has_failover": len(slugs) > 1,
                "model_fallbacks": list(gateway.live.current.fallbacks.get(model, ())),
            }
        )
    with_failover = sum(1 for m in models if m["has_failover"])
    return JSONResponse({"total_models": len(models), "models_with_failover": with_failover, "models": models})


async def failover_model(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    if (refused := refusal(gateway, request)) is not None:
        return refused
    model_id = request.path_params["model_id"]
    offers = gateway.catalog.lookup(model_id)
    if offers is None:
        body = error_body(
            f"The model '{model_id[:256]}' does not exist on this proxy",
            "invalid_request_error",
            "model_not_found",
            "model_id",
        )
        return Response(body, status_code=404, media_type="application/json")
    ranked, views = _ranked(gateway, offers)
    order = [_order_entry(gateway, i + 1, o, views[o.key]) for i, o in enumerate(ranked)]
    canonical = offers[0].model_id if offers else model_id
    live = gateway.live.current
    hedge = live.hedge_rule(canonical)
    return JSONResponse(
        {
            "model": canonical,
            "model_chain": [canonical, *live.fallbacks.get(canonical, ())],
            "strategy": gateway.settings.strategy.value,
            "hedge": {"enabled": hedge.enabled, "budget": hedge.budget},
            "providers_available": len(order),
            "failover_order": order,
            "recommendation": _recommendation(order),
        }
    )


async def providers(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    if (refused := refusal(gateway, request)) is not None:
        return refused
    health: dict[str, str] = {}
    offers_count: dict[str, int] = {}
    for offers in gateway.catalog.offers().values():
        for offer in offers:
            health[offer.provider_slug] = offer.provider_health.value
            offers_count[offer.provider_slug] = offers_count.get(offer.provider_slug, 0) + 1
    now = time.time()
    circuits = {p.slug: gateway.state.provider_circuit(p.slug, now) for p in gateway.config.providers}
    out = [
        {
            "slug": p.slug,
            "name": p.name,
            "base_url": p.base_url,
            "api": p.api,
            "api_key_env": p.api_key_env or None,
            "api_key_set": bool(p.api_key),
            "priority": p.priority,
            "is_active": p.is_active,
            "health_status": health.get(p.slug, Health.UNKNOWN.value),
            "offers": offers_count.get(p.slug, 0),
            "circuit": circuits[p.slug].value,
            "circuit_open": circuits[p.slug] is CircuitState.OPEN,
        }
        for p in gateway.config.providers
    ]
    return JSONResponse({"providers": out})


ROUTES = [
    Route("/admin/failover/status", failover_status),
    Route("/admin/failover/model/{model_id:path}", failover_model),
    Route("/admin/providers", providers),
]
