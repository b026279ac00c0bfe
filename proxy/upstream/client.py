"""The upstream HTTP client: the one module that knows which library talks to providers.

It is aiohttp's client used directly: on this project's machines a bare forwarder on it serves about
2.5 times what the same forwarder serves on httpx with the aiohttp transport (SPEC section 11, and
`bench/` measures both). Everything else sees only `UpstreamClient` and `UpstreamResponse`, and only
errors from `proxy.errors`: `_ours()` is the one place the client's exceptions become ours.

Contract: `send()` returns once the status line and headers are in; the caller owns the response
and must `close()` it (abort, connection dropped) or fully consume it (`read()`/`chunks()` then
`release()`, connection back to the pool), in a `finally`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import aiohttp

from proxy.errors import ConnectFailed, ConnectTimeout, MalformedResponse, StreamBroken, UpstreamError
from proxy.upstream.session import provider_session

MAX_ERROR_BODY = 64 * 1024
Body = bytes | tuple[bytes | memoryview, ...]
"""A request body: one buffer, or pieces sent in order (a form whose file is not copied to be sent)."""


class UpstreamResponse(Protocol):
    status: int
    headers: list[tuple[str, str]]

    async def read(self, limit: int | None = None) -> bytes: ...
    def chunks(self) -> AsyncIterator[bytes]: ...
    def release(self) -> None: ...
    def close(self) -> None: ...


class UpstreamClient(Protocol):
    async def send(
        self, url: str, headers: Mapping[str, str], body: Body, method: str = "POST"
    ) -> UpstreamResponse: ...
    async def aclose(self) -> None: ...


def _ours(exc: aiohttp.ClientError, *, started: bool) -> UpstreamError:
    """aiohttp's exception as ours (raise it `from exc`). `started`: the response had begun, so a
    drop is mid-stream. A function, not a context manager: it runs only on failure, for free."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectFailed(f"cannot connect: {exc.os_error.strerror or type(exc.os_error).__name__}")
    if isinstance(exc, aiohttp.ConnectionTimeoutError | aiohttp.ServerTimeoutError):
        return ConnectTimeout("connection timed out")
    dropped = isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError)
    if isinstance(exc, aiohttp.ClientPayloadError) or (dropped and started):
        return StreamBroken("the provider's connection dropped mid-answer")
    if dropped:
        return ConnectFailed("the provider closed the connection without answering")
    if isinstance(exc, aiohttp.ClientResponseError):
        return MalformedResponse(f"the provider's answer is not valid HTTP: {exc.message}")
    return UpstreamError(f"upstream request failed: {type(exc).__name__}")


class AiohttpResponse:
    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers]

    async def read(self, limit: int | None = None) -> bytes:
        try:
            if limit is None:
                return await self._response.read()
            return await self._response.content.read(limit)
        except aiohttp.ClientError as exc:
            raise _ours(exc, started=True) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except aiohttp.ClientError as exc:
            raise _ours(exc, started=True) from exc

    def release(self) -> None:
        self._response.release()

    def close(self) -> None:
        self._response.close()


async def _pieces(body: tuple[bytes | memoryview, ...]) -> AsyncIterator[bytes | memoryview]:
    for piece in body:
        yield piece


class AiohttpUpstream:
    """One connection pool for every provider; keep-alive connections are reused across requests."""

    def __init__(self, *, connect_timeout_s: float, max_connections: int = 0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s, connect=connect_timeout_s)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # the client's own headers go as they came: no User-Agent or Content-Type of ours
        skip = ("User-Agent", "Content-Type")
        return provider_session(self._timeout, max_connections=self._max_connections, skip_auto_headers=skip)

    async def send(
        self, url: str, headers: Mapping[str, str], body: Body, method: str = "POST"
    ) -> UpstreamResponse:
        """`body` in pieces is sent with its total length as `Content-Length`, piece by piece."""
        if self._session is None:
            self._session = self._open()
        data: bytes | AsyncIterator[bytes | memoryview] = body if isinstance(body, bytes) else _pieces(body)
        if not isinstance(body, bytes):
            headers = {**headers, "content-length": str(sum(len(piece) for piece in body))}
        try:
            response = await self._session.request(method, url, data=data, headers=headers, allow_redirects=False)
        except aiohttp.ClientError as exc:
            raise _ours(exc, started=False) from exc
        except ValueError as exc:  # aiohttp refuses to write a header (a control character in it)
            raise UpstreamError("the request to this provider could not be written") from exc
        return AiohttpResponse(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            await asyncio.sleep(0)  # let the connector's transports finish closing
