"""A fake upstream client for unit tests of the request path: scripted answers, no sockets.

`FakeUpstream` implements `proxy.upstream.client.UpstreamClient`: each provider's base URL has a
script of `Answer`s (one taken per request, the last one repeated) that say the status, headers,
body or stream chunks, and how long to wait before the status line (`delay_s`). Every response
records whether it was released (read to its end) or closed (abandoned), so a test can check that
no connection is left open.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.errors import ConnectFailed
from proxy.upstream.client import Body

CHAT_ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
}


def chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> bytes:
    delta = {} if content is None else {"content": content}
    event = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps({**event, **extra}) + b"\n\n"


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: Any = field(default_factory=lambda: CHAT_ANSWER)  # JSON-able, or bytes as they are
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)
    chunks: Sequence[bytes] = ()  # a stream's bytes, read by read() and chunks() alike
    delay_s: float = 0.0  # before the status line
    refuse: bool = False  # the connection is refused
    stall: bool = False  # after `chunks`, a keep-alive comment every 10 ms, forever

    @staticmethod
    def stream(*chunks: bytes, delay_s: float = 0.0, stall: bool = False) -> Answer:
        return Answer(chunks=chunks, headers=(("content-type", "text/event-stream"),), delay_s=delay_s, stall=stall)

    @staticmethod
    def error(status: int, message: str, *, headers: tuple[tuple[str, str], ...] = (), code: str = "") -> Answer:
        body = {"error": {"message": message, "type": "invalid_request_error", "code": code or None}}
        return Answer(status, body, (("content-type", "application/json"), *headers))


class FakeResponse:
    def __init__(self, answer: Answer) -> None:
        self.status = answer.status
        self.headers = list(answer.headers)
        self._answer = answer
        self.released = False
        self.closed = False

    def _bytes(self) -> bytes:
        if self._answer.chunks:
            return b"".join(self._answer.chunks)
        body = self._answer.body
        return body if isinstance(body, bytes) else orjson.dumps(body)

    async def read(self, limit: int | None = None) -> bytes:
        data = self._bytes()
        return data if limit is None else data[:limit]

    async def chunks(self) -> AsyncIterator[bytes]:
        for piece in self._answer.chunks or (self._bytes(),):
            await asyncio.sleep(0)
            yield piece
        while self._answer.stall:
            await asyncio.sleep(0.01)
            yield b": keep-alive\n\n"

    def release(self) -> None:
        self.released = True

    def close(self) -> None:
        self.closed = True


@dataclass
class Sent:
    url: str
    headers: Mapping[str, str]
    body: bytes
    method: str


class FakeUpstream:
    """Scripted providers by base URL (`http://<slug>`), with every request and response kept."""

    def __init__(self, scripts: Mapping[str, Sequence[Answer]]) -> None:
        self.scripts = {slug: list(answers) for slug, answers in scripts.items()}
        self.sent: list[Sent] = []
        self.responses: list[FakeResponse] = []

    def sent_to(self, slug: str) -> list[Sent]:
        return [s for s in self.sent if s.url.startswith(f"http://{slug}/")]

    async def send(self, url: str, headers: Mapping[str, str], body: Body, method: str = "POST") -> FakeResponse:
        raw = body if isinstance(body, bytes) else b"".join(bytes(piece) for piece in body)
        self.sent.append(Sent(url, dict(headers), raw, method))
        slug = url.removeprefix("http://").split("/", 1)[0]
        script = self.scripts[slug]
        answer = script.pop(0) if len(script) > 1 else script[0]
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        if answer.refuse:
            raise ConnectFailed("cannot connect: Connection refused")
        response = FakeResponse(answer)
        self.responses.append(response)
        return response

    async def aclose(self) -> None:
        pass
