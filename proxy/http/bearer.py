"""The token of an `Authorization: Bearer <token>` header, for the client keys and the admin token alike."""

from __future__ import annotations

_SCHEME = b"bearer "


def bearer_token(authorization: bytes) -> bytes:
    """The token (surrounding space dropped) when the header names the Bearer scheme (any case), else b""."""
    return authorization[len(_SCHEME) :].strip() if authorization[: len(_SCHEME)].lower() == _SCHEME else b""
