"""Client key names: how a `FAILOVER_API_KEYS` entry names its key, and the name of a key given bare.

A key is known by its name everywhere the proxy says who made a request (the access line, the
spend counters, the budget error); the key itself is only compared, never shown or stored.

- `FAILOVER_API_KEYS="alice:sk-1,bob:sk-2"`: each entry `name:key`, split at its first colon.
- A bare entry (no colon, or a text before the colon that is not a name) keeps working; its name is
  `bare_key_name(key)`: `key-` and the first 8 hex digits of the key's SHA-256, stable across
  restarts and instances, and far from enough to recover the key (32 bits of a one-way hash: every
  8-hex name is shared by vastly many keys of a key's usual length).

Names are slugs (`KEY_NAME`): letters, digits, `.`, `_`, `-`, at most 64 characters; they go into
Redis keys, Postgres rows and log lines as they are.
"""

from __future__ import annotations

import hashlib
import re

KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
BARE_PREFIX = "key-"


def is_key_name(text: str) -> bool:
    """`text` is a usable key name (`KEY_NAME`)."""
    return KEY_NAME.fullmatch(text) is not None


def bare_key_name(key: str) -> str:
    """The name of a key given without one: `key-` + 8 hex digits of its SHA-256 (not reversible)."""
    return BARE_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:8]


def split_entry(entry: str) -> tuple[str, str]:
    """One `FAILOVER_API_KEYS` entry as (name, key), whitespace dropped: `name:key` when the text
    before the first colon is a name, else the whole entry is a bare key named by `bare_key_name`."""
    entry = entry.strip()
    name, colon, key = entry.partition(":")
    if colon and is_key_name(name.strip()) and key.strip():
        return name.strip(), key.strip()
    return bare_key_name(entry), entry


def split_entries(value: str) -> list[tuple[str, str]]:
    """Every non-empty comma-separated entry of `FAILOVER_API_KEYS`, as (name, key)."""
    return [split_entry(entry) for entry in value.split(",") if entry.strip()]
