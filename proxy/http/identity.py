"""Who a request is: its id, and whether its client key opens this proxy (or its admin token the admin API).

Everything that answers a client reads these, the proxied routes, the models list and the admin views
alike, so a key is checked one way everywhere (in constant time, over every configured key).
"""

from __future__ import annotations

import hmac
import random
from collections.abc import Mapping

from proxy.errors import Unauthorized
from proxy.failover.client_request import SLUG

_SCHEME = b"bearer "


def request_id(given: bytes | None) -> str:
    """The proxy's own id of a request, unique per request: a new random one (128 bits, hex); when the
    client sent an `x-request-id` that is a short slug, that id followed by `-` and 64 random bits, so
    its logs still find the request. Never the client's id alone: the id keys the request's usage
    record, and a client that sent one id twice would otherwise have its second request go unbilled."""
    if given is not None and len(given) <= 64 and SLUG.match(given.decode("latin-1")):
        return f"{given.decode('latin-1')}-{random.getrandbits(64):016x}"
    return f"{random.getrandbits(128):032x}"  # as unique as uuid4().hex, without a system call


def bearer_token(authorization: bytes) -> bytes:
    """The token (surrounding space dropped) when the header names the Bearer scheme (any case), else b""."""
    return authorization[len(_SCHEME) :].strip() if authorization[: len(_SCHEME)].lower() == _SCHEME else b""


def authorize(client_keys: tuple[bytes, ...], headers: Mapping[bytes, bytes]) -> None:
    """`Unauthorized` unless no client key is configured (`FAILOVER_API_KEYS` unset) or the request's
    key is one of them: its bearer token, else its `x-api-key` (how the anthropic SDKs and Claude
    Code send a key; never forwarded to a provider)."""
    if not client_keys:
        return
    token = bearer_token(headers.get(b"authorization", b"")) or headers.get(b"x-api-key", b"").strip()
    matched = False
    for key in client_keys:
        matched |= hmac.compare_digest(token, key)
    if not matched:
        raise Unauthorized("invalid or missing API key for this proxy (Authorization: Bearer <key>, or x-api-key)")
