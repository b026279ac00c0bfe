"""Classifying an upstream outcome: fail over, or answer the client with it? (SPEC section 7)

Pure functions over a status code and headers. A status is retryable when another provider might
serve the same request: the provider is overloaded, down, rate-limited, or its own key, billing or
catalog is wrong (401, 402, 403, 404 come from the provider's side here, never the client's, since
the client's key is never sent upstream). 400, 413 and 422 are the client's own mistake: every
provider would say the same, so they are passed through unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES = frozenset({401, 402, 403, 404, 408, 429, 500, 502, 503, 504, 529})
COOLDOWN_STATUSES = frozenset({429, 503, 529})
MAX_RETRY_AFTER_S = 3600.0


def is_retryable_status(status: int) -> bool:
    """Should the next offer be tried after this status? Unknown 5xx are retried; other 4xx are not.
    A redirect (3xx) is the provider's URL being wrong, never the client's doing: it is not followed,
    and never passed on (its `Location` would send the client elsewhere), so it is failed over."""
    return status in RETRYABLE_STATUSES or status >= 500 or 300 <= status < 400


def retry_after_seconds(headers: Iterable[tuple[str, str]], now: float) -> float | None:
    """Seconds until the provider wants to be asked again, from `retry-after-ms` or `Retry-After`
    (seconds or an HTTP date, read against the wall clock `now`). Capped at an hour; None if absent
    or unreadable."""
    found: dict[str, str] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in ("retry-after", "retry-after-ms"):
            found[lowered] = value.strip()
    if "retry-after-ms" in found:
        seconds = _number(found["retry-after-ms"])
        if seconds is not None:
            return _cap(seconds / 1000.0)
    if "retry-after" in found:
        value = found["retry-after"]
        seconds = _number(value)
        if seconds is None:
            seconds = _http_date_delta(value, now)
        if seconds is not None:
            return _cap(seconds)
    return None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _http_date_delta(text: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def _cap(seconds: float) -> float:
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
