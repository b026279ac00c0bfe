"""The fast mock upstream for the benchmarks: a minimal HTTP/1.1 server on asyncio protocols (uvloop).

`failover mock-provider` is a full Starlette app with fault modes; at tens of thousands of requests
per second it would be the bottleneck of every measurement. This one does the least an
OpenAI-compatible provider can: any POST gets a chat completion (with `usage`) at once, or, when the
body asks for `"stream": true`, server-sent events: a role event at once, `--chunks` content events
`--chunk-interval-ms` apart (the body fields `bench_chunks` and `bench_interval_ms` override both),
a usage event and `data: [DONE]`. `--status 500` answers every POST
with that status and an OpenAI-shaped error. Keep-alive and pipelining are honoured.

    python bench/upstream.py --port 9001 [--status 500] [--chunks 10 --chunk-interval-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import cast

import orjson

COMPLETION = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18},
    }
)
ERROR = orjson.dumps({"error": {"message": "bench upstream failure", "type": "server_error", "code": "bench"}})
HEAD = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: keep-alive\r\n\r\n"
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
)
REASONS = {200: b"OK", 500: b"Internal Server Error", 503: b"Service Unavailable", 404: b"Not Found"}
MODELS = orjson.dumps({"object": "list", "data": [{"id": "bench-model", "object": "model", "owned_by": "bench"}]})


def _event(payload: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    return _event(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "bench-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def _framed(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


ROLE = _framed(_chunk({"role": "assistant", "content": ""}))
CONTENT = _framed(_chunk({"content": "token "}))
TAIL = _framed(
    _chunk({}, "stop")
    + _event({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
              "model": "bench-model", "choices": [],
              "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18}})
    + b"data: [DONE]\n\n"
) + b"0\r\n\r\n"


class Settings:
    def __init__(self, status: int, chunks: int, interval_s: float) -> None:
        self.status = status
        self.chunks = chunks
        self.interval_s = interval_s
        body = COMPLETION if status == 200 else ERROR
        self.answer = HEAD % (status, REASONS.get(status, b"Status"), b"application/json", len(body)) + body


class Stream:
    """One streamed answer: the role event at once, then a content event every interval."""

    __slots__ = ("conn", "interval_s", "left", "loop")

    def __init__(self, conn: HttpConnection, loop: asyncio.AbstractEventLoop, chunks: int, interval_s: float) -> None:
        self.conn, self.loop, self.left, self.interval_s = conn, loop, chunks, interval_s
        conn.transport.write(STREAM_HEAD + ROLE)
        self.next()

    def next(self) -> None:
        if self.conn.transport.is_closing():
            return
        if self.left <= 0:
            self.conn.transport.write(TAIL)
            self.conn.stream_done()
            return
        interval = self.interval_s
        if interval <= 0:
            self.conn.transport.write(CONTENT * self.left)
            self.left = 0
            self.next()
            return
        self.left -= 1
        self.loop.call_later(interval, self._send)

    def _send(self) -> None:
        if not self.conn.transport.is_closing():
            self.conn.transport.write(CONTENT)
            self.next()


class HttpConnection(asyncio.Protocol):
    __slots__ = ("buffer", "busy", "loop", "settings", "transport")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.buffer = b""
        self.busy = False  # a stream is being written: later pipelined requests wait for it
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self.process()

    def process(self) -> None:
        while not self.busy:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = _content_length(head)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self.answer(head, body)

    def answer(self, head: bytes, body: bytes) -> None:
        if head.startswith(b"GET"):
            self.transport.write(HEAD % (200, b"OK", b"application/json", len(MODELS)) + MODELS)
        elif self.settings.status != 200:
            self.transport.write(self.settings.answer)
        elif b'"stream"' in body and (request := orjson.loads(body)).get("stream") is True:
            self.busy = True
            chunks = int(request.get("bench_chunks", self.settings.chunks))
            interval_s = float(request.get("bench_interval_ms", self.settings.interval_s * 1000)) / 1000
            Stream(self, self.loop, chunks, interval_s)
        else:
            self.transport.write(self.settings.answer)

    def stream_done(self) -> None:
        self.busy = False
        if self.buffer:
            self.process()


def _content_length(head: bytes) -> int:
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    start = at + 17
    stop = lower.find(b"\r\n", start)
    return int(lower[start : stop if stop >= 0 else len(lower)].strip())


async def serve(host: str, port: int, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpConnection(settings), host, port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--chunk-interval-ms", type=float, default=0.0)
    args = parser.parse_args()
    import uvloop

    settings = Settings(args.status, args.chunks, args.chunk_interval_ms / 1000)
    uvloop.run(serve(args.host, args.port, settings))


if __name__ == "__main__":
    main()
