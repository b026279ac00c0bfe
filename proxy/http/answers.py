"""What the client receives: OpenAI-shaped error bodies, and the headers on every proxied answer.

Headers from a provider are passed on except hop-by-hop ones, cookies, and the framing headers this
proxy sets itself. A provider's text never becomes a header name or value of ours: our headers
carry only catalog values (slugs, model ids) and numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from functools import lru_cache
from typing import Any

import orjson

from proxy.billing.cost import cost_text
from proxy.errors import AllOffersFailed, ClientError
from proxy.runtime.state import ACCOUNT_REFUSED
from proxy.types import Offer
from proxy.upstream.usage import Usage

Headers = list[tuple[bytes, bytes]]

DROPPED_RESPONSE_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
        "set-cookie",
        "date",
        "server",
        "alt-svc",
        "location",
    }
)
REDACTED = b"[redacted]"
JSON = (b"content-type", b"application/json")


def error_body(message: str, error_type: str, code: str, param: str | None = None, **extra: Any) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": error_type, "code": code, "param": param, **extra}})


def client_error(exc: ClientError) -> tuple[int, bytes]:
    return exc.status, error_body(exc.message, exc.error_type, exc.code, exc.param)


def all_failed(exc: AllOffersFailed, model: str) -> tuple[int, bytes, Headers]:
    """The 503 when no offer served, with the truth about retrying for OpenAI-style clients (whose
    SDKs retry a 503 `max_retries` times, 2 by default, honouring `Retry-After` up to 60 s and
    obeying `x-should-retry`, as the official openai-python and openai-node clients do):
    `Retry-After` when every offer is cooling down (a retry then can succeed); otherwise
    `x-should-retry: false`, because the proxy has just tried every offer it may and an immediate
    retry would only repeat that."""
    retry_after = None if exc.retry_after_s is None else max(1, round(exc.retry_after_s + 0.499))
    if exc.attempts:
        message = f"every provider for {model} failed ({len(exc.attempts)} attempt(s)); see attempts"
    else:
        why = "; ".join(cooling_phrase(provider, reason) for provider, reason in exc.cooling)
        when = f"retry in {retry_after} s" if retry_after is not None else "retry later"
        message = f"every provider for {model} is cooling down: {why or 'each asked to wait'}; {when}"
    body = error_body(message, "api_error", "all_providers_failed", attempts=[a.as_json(model) for a in exc.attempts])
    return 503, body, retry_headers(exc.retry_after_s)


def retry_headers(retry_after_s: float | None) -> Headers:
    """`Retry-After` (whole seconds, at least 1) when a retry can succeed then, else `x-should-retry: false`."""
    if retry_after_s is not None:
        return [(b"retry-after", str(max(1, round(retry_after_s + 0.499))).encode())]
    return [(b"x-should-retry", b"false")]


def cooling_phrase(provider: str, reason: str) -> str:
    """Why one provider is cooling down, from the outcome that set its cooldown
    (`proxy.runtime.state.RuntimeState.cooling_reasons`). A 429 cools an offer with or without
    `Retry-After` (`default_cooldown_s`); any other status only when the provider sent one."""
    if reason == ACCOUNT_REFUSED:
        return f"{provider} refused its account (key, billing or quota)"
    if reason == "429":
        return f"{provider} answered 429 (rate limited)"
    if reason.isdigit():
        return f"{provider} answered {reason} with Retry-After"
    if reason:
        return f"{provider} refused with {reason}, saying when to retry"
    return f"{provider} is cooling down as another proxy instance was told"


def forwarded_headers(upstream: Iterable[tuple[str, str]]) -> Headers:
    return [
        (passed, value.encode("latin-1")) for name, value in upstream if (passed := forwarded_name(name)) is not None
    ]


@lru_cache(maxsize=1024)
def forwarded_name(name: str) -> bytes | None:
    """A provider's header name as we pass it on (lower case, bytes), or None when it is dropped;
    remembered, since providers send the same few names on every answer (bounded: odd names only
    push the oldest out)."""
    lower = name.lower()
    if lower in DROPPED_RESPONSE_HEADERS or lower.startswith("x-gatewayz-"):
        return None
    return lower.encode("latin-1")


def labelled_json(headers: Headers) -> Headers:
    """The headers of an answer that parsed as JSON, labelled `application/json` when the provider said
    otherwise: openai-node returns the body of a `text/plain` answer as a string, not the completion
    (mistral.rs and other servers label their JSON `text/plain; charset=utf-8`)."""
    for name, value in headers:
        if name == b"content-type":
            if value.find(b"json") >= 0 or value.lower().find(b"json") >= 0:  # `find`: see `proxy.upstream.sse`
                return headers
            break
    return [*(h for h in headers if h[0] != b"content-type"), JSON]


def gateway_headers(offer: Offer | None, attempts: int, request_id: str) -> Headers:
    """`x-request-id`, `x-gatewayz-attempts` and, when an offer answered, which one it was."""
    headers: Headers = [(b"x-request-id", request_id.encode("latin-1"))]
    if offer is not None:
        headers.append((b"x-gatewayz-model", offer.model_id.encode("latin-1", "replace")))
        headers.append((b"x-gatewayz-provider", offer.provider_slug.encode("latin-1", "replace")))
        headers.append((b"x-gatewayz-provider-model", offer.provider_model_id.encode("latin-1", "replace")))
    headers.append((b"x-gatewayz-attempts", str(attempts).encode()))
    return headers


def usage_headers(usage: Usage | None, cost: Decimal | None) -> Headers:
    """What a whole answer cost: `x-gatewayz-cost-usd` (USD, plain decimal text, e.g. `0.00042`; left
    out when the offer that served is unpriced), and `x-gatewayz-prompt-tokens` and
    `x-gatewayz-completion-tokens` when the answer reported its usage. The same values as its usage
    record (`GET /v1/generation?id=<x-request-id>`)."""
    headers: Headers = []
    if cost is not None:
        headers.append((b"x-gatewayz-cost-usd", cost_text(cost).encode()))
    if usage is not None:
        headers.append((b"x-gatewayz-prompt-tokens", str(usage.prompt_tokens).encode()))
        headers.append((b"x-gatewayz-completion-tokens", str(usage.completion_tokens).encode()))
    return headers


def redact(data: bytes, secrets: Iterable[bytes]) -> bytes:
    """`data` with every occurrence of each secret replaced by `[redacted]`."""
    for secret in secrets:
        if secret in data:
            data = data.replace(secret, REDACTED)
    return data
