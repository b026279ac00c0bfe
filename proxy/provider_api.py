"""How a request is signed for a provider, by the API it speaks (`proxy.types.APIS`).

- `openai` (the default): `Authorization: Bearer <key>`.
- `anthropic`: `x-api-key: <key>` and `anthropic-version`, the two headers Anthropic's Messages API
  requires on every request (https://platform.claude.com/docs/en/api/versioning: "When making API requests,
  you must send an anthropic-version request header"); the client's own version is kept when it
  sent one (a Messages client), else `ANTHROPIC_VERSION`, the version the official SDKs send.

The request path (`proxy.failover.attempts`), the health probes and the listing read use this one
rule, so a provider's key is sent one way everywhere, and only to that provider.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Protocol

OPENAI = "openai"
ANTHROPIC = "anthropic"
ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_ENDPOINTS = ("chat",)  # what an Anthropic-speaking offer serves: chat (translated) and messages
# the client's headers of the Anthropic API, passed on to Anthropic-speaking offers only
ANTHROPIC_HEADERS = ("anthropic-version", "anthropic-beta")


class Key(Protocol):
    """A provider's key as the config holds it (`proxy.config.Secret`): shown only to be sent."""

    def reveal(self) -> str: ...
    def __bool__(self) -> bool: ...


def sign(headers: MutableMapping[str, str], api: str, key: Key | None) -> None:
    """Put `key` (none, or an empty one: no key header) and, for Anthropic, a version into the
    `headers` of one request to a provider of `api`."""
    if api == ANTHROPIC:
        if key:
            headers["x-api-key"] = key.reveal()
        headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
    elif key:
        headers["authorization"] = f"Bearer {key.reveal()}"
