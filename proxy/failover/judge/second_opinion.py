"""A second opinion on a refusal of unknown kind: one more offer, of another provider. Pure.

A provider's 400/422 that says neither that the client erred (a known client mistake, passed through
at once) nor that this offer lacks something (unsupported, a context or rate limit: failed over) may
be either. The proxy asks one more offer, of another provider, once: if it serves, the client has its
answer; if it refuses too, or fails otherwise, the first refusal is passed through unchanged, so a
real client mistake still reaches the client as it was said, at the cost of one fast round trip.
Never more than one extra attempt, never past `max_attempts`, never when the request said
`provider.allow_fallbacks: false`, never when `[proxy] second_opinion = false`.

    outcome   the offer asked ...                    counted in gatewayz_second_opinions_total{model,outcome}
    served    served the request: the outcome changed
    refused   refused it too (a 4xx): the first refusal was passed through
    failed    failed otherwise (5xx, timeout, cut): the first refusal was passed through
"""

from __future__ import annotations

from collections.abc import Sequence

from proxy.errors import UpstreamError, UpstreamStatus
from proxy.types import Offer, Preferences

SERVED = "served"
REFUSED = "refused"
FAILED = "failed"


def second_opinion_offer(
    refused_by: Offer,
    asks: bool,
    prefs: Preferences,
    offers: Sequence[Offer],
    *,
    tried: int,
    max_attempts: int,
    enabled: bool,
) -> Offer | None:
    """The offer to ask after `refused_by` refused with a refusal that `asks` for a second opinion:
    the best ranked offer after it whose provider is another; None when there is none, when the
    request allows no fallback, when `tried` attempts already reach `max_attempts`, or when disabled."""
    if not (asks and enabled and prefs.allow_fallbacks) or tried >= max_attempts:
        return None
    after = offers[offers.index(refused_by) + 1 :] if refused_by in offers else offers
    for offer in after:
        if offer.provider_slug != refused_by.provider_slug:
            return offer
    return None


def opinion_outcome(error: UpstreamError | None) -> str:
    """How the second opinion ended: `served`, `refused` (a 4xx) or `failed`."""
    if error is None:
        return SERVED
    if isinstance(error, UpstreamStatus) and 400 <= error.status < 500:
        return REFUSED
    return FAILED
