"""A bare forwarder: the floor of a Python proxy on a given upstream client.

It reads the request body, POSTs it to the same path on `--upstream`, and streams the answer back
chunk by chunk: no parsing, no ranking, no failover, no metrics, no log. It runs on the same server
stack as `failover serve` (uvicorn, uvloop, httptools, one worker), so the proxy's ratio to it is
the cost of what the proxy does, on the same client.

    python bench/forwarder.py --client aiohttp|httpx-aiohttp|httpx --port 9002 --upstream http://127.0.0.1:9001
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
PASSED = {"content-type", "cache-control"}


class Forward(Protocol):
    async def __call__(self, url: str, body: bytes, send: Send) -> None: ...


def aiohttp_forward() -> tuple[Forward, Callable[[], Awaitable[None]]]:
    import aiohttp

    session: aiohttp.ClientSession | None = None

    async def forward(url: str, body: bytes, send: Send) -> None:
        nonlocal session
        if session is None:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        async with session.post(url, data=body, headers={"content-type": "application/json"}) as response:
            headers = [(k.lower(), v) for k, v in response.raw_headers if k.lower().decode() in PASSED]
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def close() -> None:
        if session is not None:
            await session.close()

    return forward, close


def httpx_forward(transport: str) -> tuple[Forward, Callable[[], Awaitable[None]]]:
    import httpx

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    if transport == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        client = httpx.AsyncClient(transport=AiohttpTransport(limits=limits), timeout=60)
    else:
        client = httpx.AsyncClient(limits=limits, timeout=60)

    async def forward(url: str, body: bytes, send: Send) -> None:
        headers = {"content-type": "application/json"}
        async with client.stream("POST", url, content=body, headers=headers) as response:
            passed = [(k, v) for k, v in response.headers.raw if k.lower().decode() in PASSED]
            await send({"type": "http.response.start", "status": response.status_code, "headers": passed})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return forward, client.aclose


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def make_app(upstream: str, forward: Forward, close: Callable[[], Awaitable[None]]) -> Any:
    async def lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        body = await _body(receive)
        await forward(upstream + scope["path"], body, send)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", choices=("aiohttp", "httpx-aiohttp", "httpx"), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL of the upstream, without /v1")
    args = parser.parse_args()
    if args.client == "aiohttp":
        forward, close = aiohttp_forward()
    else:
        forward, close = httpx_forward("aiohttp" if args.client == "httpx-aiohttp" else "default")
    app = make_app(args.upstream.rstrip("/"), forward, close)
    uvicorn.run(
        app, host=args.host, port=args.port, loop="uvloop", http="httptools", lifespan="on",
        access_log=False, server_header=False, log_level="warning",
    )


if __name__ == "__main__":
    main()
