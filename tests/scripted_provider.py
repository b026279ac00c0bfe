"""A provider that sends exactly the bytes a test scripts, cut where the test says, on loopback.

The mock provider (`proxy.mock`) speaks a well-behaved OpenAI dialect with fault modes; this one
replays recorded provider traffic byte for byte: each `Reply` is a status, headers and body pieces,
each piece written (and flushed) on its own after `gap_s`, so the proxy reads them as separate network
reads. Bodies use chunked transfer encoding (as real providers stream); `end_delay_s` waits before
the terminating chunk, `cut` drops the connection instead of ending the body.

    with ScriptedProvider(Reply(pieces=(b": OPENROUTER PROCESSING\\n\\n", b'data: {"error": ...}\\n\\n'))) as a:
        ...  # a.url is the base URL; the n-th request gets the n-th reply (the last one repeats)
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Reply:
    status: int = 200
    pieces: tuple[bytes, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "text/event-stream"
    gap_s: float = 0.0  # before every piece but the first
    end_delay_s: float = 0.0  # after the last piece, before the body ends
    cut: bool = False  # drop the connection instead of ending the body


def json_reply(body: Any, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, (orjson.dumps(body),), headers, content_type="application/json")


def event(payload: Any) -> bytes:
    return b"data: " + (payload if isinstance(payload, bytes) else orjson.dumps(payload)) + b"\n\n"


def chunk(content: str | None = None, *, finish: str | None = None, role: str | None = None, **delta: Any) -> bytes:
    """One chat completion chunk as an SSE event."""
    body: dict[str, Any] = {}
    if role is not None:
        body["role"] = role
    if content is not None:
        body["content"] = content
    body.update(delta)
    choice = {"index": 0, "delta": body, "finish_reason": finish}
    return event({"id": "gen-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice]})


def usage_chunk(prompt: int, completion: int) -> bytes:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return event({"id": "gen-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                  "usage": usage})


DONE = b"data: [DONE]\n\n"


def completion(text: str = "hello") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


class ScriptedProvider:
    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="scripted-provider", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ScriptedProvider:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop)
        self._server = future.result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()
            if self._server is not None:
                await self._server.wait_closed()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_closed() and not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> ScriptedProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append({"path": lines[0].split(" ")[1], "headers": headers, "body": json.loads(body or b"{}")})
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers)
        writer.write(
            f"HTTP/1.1 {reply.status} X\r\ncontent-type: {reply.content_type}\r\n{extra}"
            "transfer-encoding: chunked\r\n\r\n".encode()
        )
        for index, piece in enumerate(reply.pieces):
            if index and reply.gap_s:
                await asyncio.sleep(reply.gap_s)
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
        if reply.cut:
            return False
        if reply.end_delay_s:
            await asyncio.sleep(reply.end_delay_s)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True
