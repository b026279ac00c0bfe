"""The request path's own cost, in process: `ProxyHandler` against an in-memory upstream.

No sockets, no uvicorn, no aiohttp: what is left is what the proxy itself does per request (parse,
rank, attempt bookkeeping, answer headers, metrics, access log). Prints microseconds per request,
and with `--profile` the top of a cProfile sorted by own time.

    python -m bench.inproc [--requests 20000] [--stream] [--profile] [--log]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import pstats
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from bench.upstream import COMPLETION, CONTENT, ROLE, TAIL
from proxy.config import config_from_mapping
from proxy.http.gateway import Gateway
from proxy.http.handler import ProxyHandler

REQUEST = b'{"model":"bench-model","messages":[{"role":"user","content":"Say hello in one short sentence."}]}'
STREAM_REQUEST = REQUEST[:-1] + b',"stream":true}'


def _unframed(framed: bytes) -> bytes:
    """The SSE bytes inside one HTTP chunk of `bench.upstream` (the upstream client removes the framing)."""
    return framed.split(b"\r\n", 1)[1].removesuffix(b"0\r\n\r\n")[:-2]


# What the upstream client yields for a streamed answer: a role chunk, content, then finish, usage, [DONE].
EVENTS = [_unframed(ROLE), _unframed(CONTENT), _unframed(CONTENT), _unframed(TAIL)]


class MemoryResponse:
    def __init__(self, stream: bool) -> None:
        self.status = 200
        self.stream = stream
        ctype = "text/event-stream" if stream else "application/json"
        self.headers = [("content-type", ctype), ("content-length", str(len(COMPLETION))), ("connection", "keep-alive")]

    async def read(self, limit: int | None = None) -> bytes:
        return COMPLETION

    async def chunks(self) -> AsyncIterator[bytes]:
        for event in EVENTS:
            yield event

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


class MemoryUpstream:
    async def send(self, url: str, headers: Mapping[str, str], body: Any, method: str = "POST") -> MemoryResponse:
        await asyncio.sleep(0)  # one turn of the event loop, as a network round trip gives it
        return MemoryResponse(b'"stream":true' in body)

    async def aclose(self) -> None:
        pass


def gateway() -> Gateway:
    config = config_from_mapping(
        {
            "providers": [{"slug": "fast", "name": "Fast", "base_url": "http://127.0.0.1:1/v1",
                           "api_key_env": "FAST_KEY", "listing": "none"}],
            "models": [{"model_id": "bench-model", "offers": [{"provider": "fast", "provider_model_id": "m"}]}],
        },
        "(inproc)",
        {"FAST_KEY": "sk-x"},
    )
    return Gateway(config, client=MemoryUpstream())


class Cycle:
    """The request's messages behind a bound `receive`, with the `message_event` uvicorn's request
    cycle has: set, as when the whole request arrived in one read (the handler then reads the body
    without a timer, as it does under `failover serve`)."""

    def __init__(self, body: bytes, never: asyncio.Future[Any]) -> None:
        self.messages = [{"type": "http.request", "body": body, "more_body": False}]
        self.never = never
        self.message_event = asyncio.Event()
        self.message_event.set()

    async def receive(self) -> dict[str, Any]:
        if self.messages:
            return self.messages.pop()
        return await self.never  # type: ignore[no-any-return]


async def one(handler: ProxyHandler, body: bytes, never: asyncio.Future[Any]) -> int:
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}
    sent = []

    async def send(message: Any) -> None:
        sent.append(message)

    await handler(scope, Cycle(body, never).receive, send)
    return int(sent[0]["status"])


async def run(requests: int, stream: bool, profile: bool) -> None:
    served = gateway()
    handler = ProxyHandler(served)
    for sink in logging.getLogger("gatewayz.access").handlers:  # as `failover serve` wires it
        served.accounting.write_access = getattr(sink, "write_line", None)
    never: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    body = STREAM_REQUEST if stream else REQUEST
    for _ in range(500):
        assert await one(handler, body, never) == 200
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    for _ in range(requests):
        await one(handler, body, never)
    if profiler:
        profiler.disable()
    per = (time.perf_counter() - started) / requests * 1e6
    print(f"{per:.1f} us per {'streamed' if stream else 'non-streaming'} request ({requests} requests)")
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(35)
        print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--log", action="store_true", help="write the access log (to /dev/null) as serve does")
    parser.add_argument("--gc", action="store_true", help="tune the garbage collector as serve does")
    args = parser.parse_args()
    if args.gc:
        from proxy.http.server import tune_gc

        tune_gc()
    if args.log:
        from proxy.http.server import configure_logging

        configure_logging()
        logging.getLogger("gatewayz.access").handlers[0].setStream(open("/dev/null", "w"))  # noqa: SIM115
    import uvloop

    uvloop.run(run(args.requests, args.stream, args.profile))


if __name__ == "__main__":
    main()
