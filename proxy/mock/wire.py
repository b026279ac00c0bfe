"""Plain ASGI plumbing for the mock: read a body, write an answer, drop a connection, notice a client leave.

`Exchange.drop_connection` reaches the socket through uvicorn's `send` (the `down` and `cut` faults
must close a connection without an HTTP answer, which ASGI itself cannot express); under another
server it raises `RuntimeError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any, NoReturn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = b"application/json"
EVENT_STREAM = b"text/event-stream"


async def read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    while message.get("more_body", False):
        message = await receive()
        body += message.get("body", b"")
    return body


async def wait_disconnect(receive: Receive) -> None:
    """Return once the client has gone (uvicorn also says so once the answer is complete)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def forever() -> NoReturn:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


class Exchange:
    """One request and its answer in progress; `events_sent` counts the SSE events written."""

    __slots__ = ("body", "closed_by_us", "events_sent", "headers", "path", "receive", "send", "started")

    def __init__(self, path: str, body: bytes, receive: Receive, send: Send, headers: list[tuple[bytes, bytes]]):
        self.path, self.body, self.receive, self.send = path, body, receive, send
        self.headers = headers  # sent with every answer
        self.started = time.monotonic()
        self.events_sent = 0
        self.closed_by_us = False

    async def start(self, status: int, content_type: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        headers = [(b"content-type", content_type), *self.headers, *(extra or ())]
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    async def write(self, chunk: bytes, more: bool = True) -> None:
        await self.send({"type": "http.response.body", "body": chunk, "more_body": more})

    async def respond(
        self, status: int, body: bytes, content_type: bytes = JSON, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        length = [(b"content-length", str(len(body)).encode())]
        await self.start(status, content_type, length + (extra or []))
        await self.write(body, more=False)

    async def drop_connection(self) -> NoReturn:
        """Close the socket (after what was written is flushed), then wait to be cancelled."""
        transport = getattr(getattr(self.send, "__self__", None), "transport", None)
        if transport is None:
            raise RuntimeError("the mock's `down` and `cut` faults need the uvicorn server")
        self.closed_by_us = True
        transport.close()
        await wait_disconnect(self.receive)  # uvicorn must see the loss before the app returns
        await forever()


OnDisconnect = Callable[[Exchange], None]


async def answer_unless_gone(
    exchange: Exchange, work: Coroutine[Any, Any, None], on_disconnect: OnDisconnect
) -> None:
    """Run `work`; if the client leaves first, cancel it and call `on_disconnect` (unless we dropped it)."""
    answering = asyncio.ensure_future(work)
    watching = asyncio.ensure_future(wait_disconnect(exchange.receive))
    try:
        await asyncio.wait((answering, watching), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (answering, watching):
            task.cancel()
        await asyncio.wait((answering, watching))
    if answering.cancelled():
        if not exchange.closed_by_us:
            on_disconnect(exchange)
        return
    answering.result()
