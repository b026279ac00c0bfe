"""The one way this product opens an aiohttp session to providers (requests, model listings, probes).

Every session keeps no cookies (`DummyCookieJar`: what one provider sets never reaches another),
caches DNS for five minutes and keeps idle connections for 30 s. Redirects are refused per call
(`allow_redirects=False`), so a key is only ever sent to the provider's own `base_url`.
"""

from __future__ import annotations

from collections.abc import Iterable

import aiohttp


def provider_session(
    timeout: aiohttp.ClientTimeout, *, max_connections: int = 100, skip_auto_headers: Iterable[str] = ()
) -> aiohttp.ClientSession:
    """A new session (the caller closes it); `max_connections` 0 means no limit."""
    connector = aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=300, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        skip_auto_headers=tuple(skip_auto_headers),
        cookie_jar=aiohttp.DummyCookieJar(),
    )
