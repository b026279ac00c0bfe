"""What a provider's error status means, read with its body and with the request it refused. Pure.

A status alone is not enough: only some providers send `context_length_exceeded`; others send a
generic `invalid_request_error`, a bare number, a plain string `error`, or another envelope, and a
rate limit may come as 413 (Groq) or 400. The body is read whatever its envelope
(`proxy.failover.judge.error_text`), and its kind decided by what it is about, not by its wording
(`proxy.failover.judge.refusal_kinds`: the kinds, how each is recognised and recorded examples of each):

    kind                 status          what the proxy does
    insufficient_quota   any             next offer; the whole provider cools down (account_cooldown_s)
    account              any             the same (an invalid key, a suspended account, a region refused)
    401/402/403          that status     the same
    moderation           400/403/422     next offer; no cooldown, not counted against the offer
    rate_limited         400/413/429     next offer; the offer cools down when the provider says when
    over_rate_budget     400/413/429     next offer; no cooldown (this one request exceeds the per-minute
                                         budget: "Limit M, Requested N" with N > M; smaller ones fit)
    context_length       400/410/413/422 next offer with a larger (or unknown) context; else passed through
    unsupported          400/410/413/422 next offer (a field, parameter, tool, feature or the model unknown here)
    499                  499             next offer; counted against the offer
    client_mistake       400/413/422     passed through unchanged at once: every provider would say the same
    (unknown)            400/422         one second opinion from another provider's offer
                                         (`proxy.failover.judge.second_opinion`); if it refuses too, passed through
    (unknown)            413, other 4xx  passed through unchanged
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from proxy.errors import UpstreamError, UpstreamStatus
from proxy.failover.judge.classify import COOLDOWN_STATUSES, is_retryable_status, retry_after_seconds
from proxy.failover.judge.error_text import ErrorText, read_error
from proxy.failover.judge.refusal_kinds import Kind, refusal_kind
from proxy.failover.judge.request_terms import NO_TERMS, RequestTerms

ACCOUNT_STATUSES = frozenset({401, 402, 403})
BODY_READ_STATUSES = frozenset({400, 410, 413, 422, 429})
PASSED_THROUGH = frozenset({400, 413, 422})
SECOND_OPINION_STATUSES = frozenset({400, 422})
ACCOUNT_KINDS = frozenset({Kind.INSUFFICIENT_QUOTA, Kind.ACCOUNT})
OFFER_LIMITS = frozenset({Kind.CONTEXT_LENGTH, Kind.UNSUPPORTED, Kind.MODERATION})
REQUEST_REFUSALS = frozenset(kind.value for kind in OFFER_LIMITS)


class Cooldown(StrEnum):
    NONE = ""
    OFFER = "offer"  # this offer, until the provider's Retry-After
    PROVIDER = "provider"  # every offer of the provider, for account_cooldown_s


OVER_BUDGET = re.compile(r"limit:?\s*(\d+)[^.]*?requested:?\s*(\d+)")
TRY_AGAIN = re.compile(r"(?:try again|retry) in\s*(\d+(?:\.\d+)?)\s*(ms|s)\b")


@dataclass(frozen=True, slots=True)
class StatusVerdict:
    """What to do with one error status: its label, fail over or not, count it, cool what down, and
    whether a refusal of unknown kind should get a second opinion before it is passed through."""

    kind: str  # "" when the status says it all (the label is then the status)
    retryable: bool
    counts: bool = True  # against the offer's health and circuit
    cooldown: Cooldown = Cooldown.NONE
    retry_after_s: float | None = None
    second_opinion: bool = False


def is_account_failure(message: str) -> bool:
    """Does this error text say the provider's account is out of money or quota, or its key or
    account is refused? (any status, even inside a 200)"""
    return refusal_kind(ErrorText(message=message.lower())) in ACCOUNT_KINDS


def refuses_the_request(exc: UpstreamError) -> bool:
    """Is this failure an offer's 4xx refusal of the request itself (something it asks for that the
    offer lacks, or a refusal of unknown kind)? When every offer tried refused so, the first refusal
    is what the client gets, unchanged, rather than a 503: a client mistake the wording hid is still
    passed through as it was said."""
    return (
        isinstance(exc, UpstreamStatus)
        and 400 <= exc.status < 500
        and (exc.kind in REQUEST_REFUSALS or exc.second_opinion)
    )


def over_rate_budget(message: str) -> bool:
    """ "Limit M ... Requested N" with N > M and nothing "Used": this one request can never fit."""
    found = OVER_BUDGET.search(message)
    return found is not None and "used" not in message and int(found.group(2)) > int(found.group(1))


def hinted_retry_s(message: str) -> float | None:
    """ "Please try again in 4.77s" / "in 20ms" (OpenAI, Groq), "Please retry in 5.3s" (Google), as seconds."""
    found = TRY_AGAIN.search(message)
    if found is None:
        return None
    value = float(found.group(1))
    return value / 1000 if found.group(2) == "ms" else value


def classify_refusal(
    status: int, body: bytes, headers: Iterable[tuple[str, str]], now: float, terms: RequestTerms = NO_TERMS
) -> StatusVerdict:
    """The verdict on an error status from what its body is about (see the table above); `terms` are
    the names the refused request used (`proxy.failover.judge.request_terms`)."""
    read = status in BODY_READ_STATUSES or status in ACCOUNT_STATUSES
    text = read_error(body) if read else ErrorText()
    kind = refusal_kind(text, terms) if read else Kind.UNKNOWN
    if kind in ACCOUNT_KINDS:
        return StatusVerdict("" if status in ACCOUNT_STATUSES else kind.value, True, cooldown=Cooldown.PROVIDER)
    if status == 403 and kind is Kind.MODERATION:
        return StatusVerdict(Kind.MODERATION.value, True, counts=False)
    if status in ACCOUNT_STATUSES:
        return StatusVerdict("", True, cooldown=Cooldown.PROVIDER)
    if status == 499:
        return StatusVerdict("", True)
    if status in BODY_READ_STATUSES:
        verdict = _by_kind(status, kind, text, headers, now)
        if verdict is not None:
            return verdict
    return _by_status(status, headers, now)


def _by_kind(
    status: int, kind: Kind, text: ErrorText, headers: Iterable[tuple[str, str]], now: float
) -> StatusVerdict | None:
    if kind is Kind.RATE_LIMITED:
        return _rate_limit(status, text, headers, now)
    if status == 429:
        return None
    if kind in OFFER_LIMITS:
        return StatusVerdict(kind.value, True, counts=False)
    if kind is Kind.CLIENT_MISTAKE:
        return StatusVerdict("", False, counts=False)
    if status in SECOND_OPINION_STATUSES:
        return StatusVerdict("", False, counts=False, second_opinion=True)
    return None


def _rate_limit(status: int, text: ErrorText, headers: Iterable[tuple[str, str]], now: float) -> StatusVerdict:
    if over_rate_budget(text.message):
        return StatusVerdict("over_rate_budget", True, counts=False)
    retry = retry_after_seconds(headers, now)
    retry = retry if retry is not None else hinted_retry_s(text.message)
    if status == 429:
        return StatusVerdict("", True, cooldown=Cooldown.OFFER, retry_after_s=retry)
    cooldown = Cooldown.OFFER if retry is not None else Cooldown.NONE
    return StatusVerdict(Kind.RATE_LIMITED.value, True, cooldown=cooldown, retry_after_s=retry)


def _by_status(status: int, headers: Iterable[tuple[str, str]], now: float) -> StatusVerdict:
    retryable = is_retryable_status(status) and status not in PASSED_THROUGH
    if not retryable:
        return StatusVerdict("", False, counts=False)
    if status in COOLDOWN_STATUSES:
        return StatusVerdict("", True, cooldown=Cooldown.OFFER, retry_after_s=retry_after_seconds(headers, now))
    return StatusVerdict("", True)
