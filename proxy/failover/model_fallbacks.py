"""Model fallbacks: when no offer of one canonical model served, try the next model's offers.

The chain (`model_chain`, pure) is the request's `model`, then its `models` entries (OpenRouter's
shape) not equal to it, then the primary model's configured `[[models]] fallbacks` not already
listed; entries the catalog does not know are skipped. For each model in turn, `serve_request`
filters its offers by what the request needs (`proxy.failover.fit`), ranks them and runs the attempt
loop (`proxy.failover.attempts.run_attempts`, `max_attempts` per model), all within the request's one
deadline. It moves on when every offer of a model failed retryably, was cooling down, or none could
take the request; a non-retryable answer (the client's own 400) is raised at once and never moves
to another model.
Only offers that serve the request's endpoint (`proxy.failover.endpoints`) are in a chain; an upload
(a multipart form) has no `models` field and no body to measure, so only its configured fallbacks
and no fit filter apply to it.

Raises `ModelNotFound` when no model of the chain is in the catalog (or, for a known model, none of its
offers serves the endpoint), `AllOffersFailed` (every attempt of every model, from the request's
record) when some offer was tried or cooling, else the first model's refusal (`NoOfferFits`,
`NoOfferAllowed`). Each move to the next model is written into the record (`model_fallback`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass

from proxy.errors import AllOffersFailed, ClientError, ModelNotFound, NoOfferAllowed, UpstreamStatus
from proxy.failover.attempts import AttemptContext, Call, Served, run_attempts
from proxy.failover.client_request import ClientRequest
from proxy.failover.endpoints import Endpoint, ForwardRequest
from proxy.failover.fit import Needs, fit_offers, may_be_too_small, measure_needs, request_needs
from proxy.failover.ranking import rank_offers
from proxy.failover.record import RequestRecord
from proxy.runtime.catalog import Catalog
from proxy.types import Offer, OfferKey, Ranking

Chain = tuple[tuple[str, tuple[Offer, ...]], ...]  # (canonical model, its offers), in the order to try
NO_UNKNOWN: frozenset[OfferKey] = frozenset()


def model_chain(primary: str, requested: Sequence[str], configured: Sequence[str]) -> tuple[str, ...]:
    """`primary`, then `requested` and `configured` models not already listed, in that order."""
    return tuple(dict.fromkeys((primary, *requested, *configured)))


def not_offered(model: str, endpoint: Endpoint, known: bool) -> ModelNotFound:
    """The 404 for a model no offer can serve: unknown, or (`known`) not served on this endpoint."""
    if not known:
        return ModelNotFound(f"The model '{model[:256]}' does not exist on this proxy", param="model")
    message = f"The model '{model[:256]}' is not served on {endpoint.route} by any provider of this proxy"
    return ModelNotFound(message, param="model")


def resolve_chain(
    catalog: Catalog, request: ForwardRequest, fallbacks: Mapping[str, tuple[str, ...]], endpoint: Endpoint
) -> Chain:
    """The chain with each model's offers serving `endpoint`, canonical ids resolved; `ModelNotFound`
    when none is known or none serves it."""
    requested = request.models if isinstance(request, ClientRequest) else ()
    primary_offers = catalog.lookup(request.model, endpoint.kind)
    primary = catalog.resolve(request.model) or request.model
    chain: dict[str, tuple[Offer, ...]] = {}
    for name in model_chain(request.model, requested, fallbacks.get(primary, ())):
        offers = catalog.lookup(name, endpoint.kind)
        if offers:
            chain.setdefault(offers[0].model_id, offers)
    if not chain:
        raise not_offered(request.model, endpoint, primary_offers is not None)
    return tuple(chain.items())


@dataclass(slots=True)
class ModelRouter:
    """What serving a chain needs: the catalog and the attempt context (client, state, hedge budgets)."""

    catalog: Catalog
    context: AttemptContext


def plan(router: ModelRouter, call: Call, needs: Needs | None, model: str, offers: tuple[Offer, ...]) -> Ranking:
    """One model's ranking for this request: offers that cannot take it left out (an offer of another
    API than the client's that cannot be spoken to, `Endpoint.speaking`; one that does not fit), unknown
    fit after known. `needs` is None for a plain request (`proxy.failover.fit.request_needs`) and for
    an upload."""
    request = call.request
    api = call.endpoint.api
    for offer in offers:  # an offer of another API than the client's: only if the request translates
        if offer.api != api:
            offers = call.endpoint.speaking(request, offers, model)
            break
    unknown = NO_UNKNOWN
    if needs is None and isinstance(request, ClientRequest) and may_be_too_small(offers, len(request.raw)):
        needs = measure_needs(request.body, request.prefs)
    if needs is not None:
        fit = fit_offers(offers, needs, model)
        offers, unknown = fit.offers, fit.unknown
    now = time.time()
    ranking = rank_offers(
        offers,
        strategy=call.live.settings.strategy,
        prefs=request.prefs,
        runtime=router.context.state.views(offers, now),
        now=now,
        unknown=unknown,
    )
    if not ranking.offers and ranking.retry_after_s is None:
        raise NoOfferAllowed(f"no provider of {model} is left after the request's provider preferences")
    return ranking


def serve_request(router: ModelRouter, call: Call, record: RequestRecord) -> Awaitable[Served]:
    """The work that serves the request: each model of its chain in turn (see the module docstring).
    The canonical model asked for is written into `record` at once; `ModelNotFound`, `NoOfferFits` and
    `NoOfferAllowed` are raised here, before anything is sent.

    A request for one model with no fallbacks (the common case) is served by the attempt loop itself,
    planned here, with no chain and no coroutine of its own around it."""
    request, endpoint = call.request, call.endpoint
    offers = router.catalog.lookup(request.model, endpoint.kind)
    client = request if isinstance(request, ClientRequest) else None
    needs = None if client is None else request_needs(client.body, client.prefs, client.raw)
    fallbacks = call.live.fallbacks
    if offers and (client is None or not client.models):
        model = offers[0].model_id
        if model not in fallbacks:
            record.routing(request.model, model, stream=request.stream)
            return run_attempts(router.context, call, plan(router, call, needs, model, offers), record)
    chain = resolve_chain(router.catalog, request, fallbacks, endpoint)
    record.routing(request.model, chain[0][0], stream=request.stream)
    return _serve_chain(router, call, chain, needs, record)


async def _serve_chain(
    router: ModelRouter, call: Call, chain: Chain, needs: Needs | None, record: RequestRecord
) -> Served:
    refusal: ClientError | None = None
    failures: list[AllOffersFailed] = []
    previous: str | None = None
    for model, offers in chain:
        if previous is not None:
            record.model_fallback(previous, model)
        previous = model
        try:
            ranking = plan(router, call, needs, model, offers)
        except ClientError as exc:
            refusal = refusal or exc
            continue
        try:
            return await run_attempts(router.context, call, ranking, record)
        except AllOffersFailed as exc:
            failures.append(exc)
    if failures or refusal is None:
        cooling = [reason for failure in failures for reason in failure.cooling]
        raise AllOffersFailed(
            record.attempts, retry_after_s=_retry_after(failures), refusal=_refused_everywhere(failures),
            cooling=cooling,
        )  # fmt: skip
    raise refusal


def _refused_everywhere(failures: Sequence[AllOffersFailed]) -> UpstreamStatus | None:
    """When every model's every offer refused the request itself, the first refusal (to pass through)."""
    if not failures or any(f.refusal is None for f in failures):
        return None
    return failures[0].refusal


def _retry_after(failures: Sequence[AllOffersFailed]) -> float | None:
    """When every model tried is cooling down, the soonest any of them is usable again."""
    waits = [f.retry_after_s for f in failures]
    if not waits or any(w is None for w in waits):
        return None
    return min(w for w in waits if w is not None)
