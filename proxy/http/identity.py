"""Who a request is: its id, and which client key opens this proxy for it (or its admin token the admin API).

Everything that answers a client reads these, the proxied routes, the models list and the admin views
alike, so a key is checked one way everywhere (in constant time, over every configured key). A key is
known by its name (`proxy.client_keys`) from here on; the key itself goes nowhere.
"""

from __future__ import annotations

import hmac
import random
from collections.abc import Mapping

from proxy.errors import Unauthorized
from proxy.failover.client_request import SLUG
from proxy.runtime.live import LiveConfig

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


def authorize(live: LiveConfig, headers: Mapping[bytes, bytes]) -> str:
    """The name of the request's client key: its bearer token, else its `x-api-key` (how the
    anthropic SDKs and Claude Code send a key; never forwarded to a provider). "" when no client key
    is configured (the proxy is open). `Unauthorized` when the key is none of them. Every configured
    key is compared, in constant time, whichever matched."""
    if not live.client_keys:
        return ""
    token = bearer_token(headers.get(b"authorization", b"")) or headers.get(b"x-api-key", b"").strip()
    name = ""
    for key, key_name in zip(live.client_keys, live.key_names, strict=True):
        if hmac.compare_digest(token, key):
            name = key_name
    if not name:
        raise Unauthorized("invalid or missing API key for this proxy (Authorization: Bearer <key>, or x-api-key)")
    return name
