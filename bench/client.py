"""A lean HTTP/1.1 client on asyncio protocols and httptools, for what wrk cannot measure.

One `Connection` is one keep-alive socket that sends one request at a time and reports, for each:
the status, the headers, when the first body byte came (time to first chunk of a stream), when the
answer was complete, how many SSE events it carried and whether it ended cleanly with `[DONE]`.
Timings are `time.perf_counter()` seconds from just before the request was written.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import cast

import httptools
import orjson


@dataclass(slots=True)
class Answer:
    status: int = 0
    headers: dict[bytes, bytes] = field(default_factory=dict)
    first_byte_s: float = 0.0
    total_s: float = 0.0
    events: int = 0
    size: int = 0
    done: bool = False  # a stream ended with `data: [DONE]`
    error_event: bool = False  # a stream carried an error event


class Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.answer = Answer()
        self.started = 0.0
        self.waiter: asyncio.Future[Answer] | None = None
        self.tail = b""
        self.parser = httptools.HttpResponseParser(self)
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> Connection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, host, port)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed before the answer was complete"))
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(exc)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.answer.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.answer.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        answer = self.answer
        if not answer.size:
            answer.first_byte_s = time.perf_counter() - self.started
        answer.size += len(body)
        answer.events += body.count(b"data:")
        if b'data: {"error"' in body:
            answer.error_event = True
        self.tail = (self.tail + body)[-32:]

    def on_message_complete(self) -> None:
        answer = self.answer
        answer.total_s = time.perf_counter() - self.started
        answer.done = self.tail.rstrip().endswith(b"data: [DONE]")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(answer)

    async def post(self, path: str, body: bytes, *, token: str | None = None) -> Answer:
        assert self.transport is not None
        auth = f"authorization: Bearer {token}\r\n" if token else ""
        head = (
            f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{auth}\r\n"
        ).encode()
        self.answer, self.tail = Answer(), b""
        self.parser = httptools.HttpResponseParser(self)
        self.waiter = asyncio.get_running_loop().create_future()
        self.started = time.perf_counter()
        self.transport.write(head + body)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def chat_body(
    model: str, *, stream: bool = False, chunks: int | None = None, interval_ms: float | None = None
) -> bytes:
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "max_tokens": 16,
    }
    if stream:
        body["stream"] = True
    if chunks is not None:
        body["bench_chunks"] = chunks
    if interval_ms is not None:
        body["bench_interval_ms"] = interval_ms
    return orjson.dumps(body)
