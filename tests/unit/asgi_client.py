"""Calling the app in process, as uvicorn would: one ASGI request, its messages collected. No sockets.

`request()` sends the body in one message, then (like a server) answers `receive()` with
`http.disconnect` only when `disconnect` is set (an event the test sets when its client "leaves").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.types import ASGIApp, Message


@dataclass
class Reply:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    complete: bool = False  # the last body message said more_body False

    def json(self) -> Any:
        return orjson.loads(self.body)

    def events(self) -> list[bytes]:
        """A stream's `data:` payloads, in order."""
        return [line[6:] for line in self.body.split(b"\n") if line.startswith(b"data: ")]


async def request(
    app: ASGIApp,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    disconnect: asyncio.Event | None = None,
    reply: Reply | None = None,
) -> Reply:
    raw = body if isinstance(body, bytes) else (b"" if body is None else orjson.dumps(body))
    path, _, query = path.partition("?")
    head = {"content-type": "application/json", "content-length": str(len(raw)), **(headers or {})}
    scope = {
        "type": "http", "method": method, "path": path, "query_string": query.encode(), "http_version": "1.1",
        "headers": [(k.lower().encode(), v.encode()) for k, v in head.items()],
    }  # fmt: skip
    pending = [{"type": "http.request", "body": raw, "more_body": False}]
    left = disconnect or asyncio.Event()
    out = reply or Reply()

    async def receive() -> Message:
        if pending:
            return pending.pop()
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            out.status = message["status"]
            out.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            out.body += message.get("body", b"")
            out.complete = not message.get("more_body", False)

    await app(scope, receive, send)
    return out
