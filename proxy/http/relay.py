"""Relaying a committed stream to the client, chunk by chunk, as it arrives.

The first event was read before commit (so a failure before it failed over). From here on the 200
is sent, so a failure cannot be retried: an upstream error, a stream that goes quiet for
`stream_idle_timeout_s`, or a stream that ends without `data: [DONE]` ends the client's stream with
an SSE error event and no `[DONE]`, so the client sees a failure and never a clean truncation.
The caller cancels this coroutine when the client disconnects; the upstream response is closed in
the `finally` either way.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from proxy.errors import StreamBroken, StreamIdle, UpstreamError
from proxy.http.answers import error_body
from proxy.types import Send
from proxy.upstream.client import UpstreamResponse
from proxy.upstream.usage import Usage


class StreamTail(Protocol):
    """Follows a relayed stream: `done` once it ended as its API ends one (`[DONE]`, or the
    Responses API's terminal event), and the usage it carried."""

    @property
    def done(self) -> bool: ...
    def feed(self, chunk: bytes) -> None: ...
    def usage(self) -> Usage | None: ...


def error_event(exc: UpstreamError) -> bytes:
    return b"data: " + error_body(exc.message, "upstream_error", exc.code) + b"\n\n"


class IdleWatch:
    """Expires `timer` once `idle_s` have passed without a `touch()`. One timer per quiet period
    instead of a new one per chunk: at thousands of chunks a second, rescheduling the timeout on
    every chunk was a large share of the relay's cost."""

    __slots__ = ("_handle", "_idle_s", "_last", "_loop", "_timer")

    def __init__(self, timer: asyncio.Timeout, idle_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._timer, self._idle_s = timer, idle_s
        self._last = self._loop.time()
        self._handle = self._loop.call_at(self._last + idle_s, self._check)

    def touch(self) -> None:
        self._last = self._loop.time()

    def _check(self) -> None:
        due = self._last + self._idle_s
        now = self._loop.time()
        if now >= due:
            self._timer.reschedule(now)  # expire: the task is cancelled, `timeout` raises TimeoutError
        else:
            self._handle = self._loop.call_at(due, self._check)

    def close(self) -> None:
        self._handle.cancel()


async def relay_stream(
    send: Send, response: UpstreamResponse, first: bytes, idle_timeout_s: float, tail: StreamTail
) -> UpstreamError | None:
    """Send `first` and every later chunk; return the error that ended the stream, or None."""
    error: UpstreamError | None = None
    clean = False
    try:
        tail.feed(first)
        await send({"type": "http.response.body", "body": first, "more_body": True})
        try:
            async with asyncio.timeout(None) as timer:
                watch = IdleWatch(timer, idle_timeout_s)
                try:
                    async for chunk in response.chunks():
                        tail.feed(chunk)
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        watch.touch()
                finally:
                    watch.close()
        except TimeoutError:
            error = StreamIdle(f"the provider sent nothing for {idle_timeout_s:g} s")
        except UpstreamError as exc:
            error = exc
        if error is None and not tail.done:
            error = StreamBroken("the provider's stream ended without [DONE]")
        ending = error_event(error) if error is not None else b""
        await send({"type": "http.response.body", "body": ending, "more_body": False})
        clean = error is None
        return error
    finally:
        if clean:
            response.release()
        else:
            response.close()


async def relay_bytes(send: Send, response: UpstreamResponse, first: bytes, idle_timeout_s: float) -> None:
    """A binary answer (audio), as it comes. Raises the `UpstreamError` that broke it (idle or cut);
    the caller must then drop the connection rather than end the body, so that the client sees a
    truncated download and not a shorter file."""
    clean = False
    try:
        await send({"type": "http.response.body", "body": first, "more_body": True})
        try:
            async with asyncio.timeout(None) as timer:
                watch = IdleWatch(timer, idle_timeout_s)
                try:
                    async for chunk in response.chunks():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        watch.touch()
                finally:
                    watch.close()
        except TimeoutError:
            raise StreamIdle(f"the provider sent nothing for {idle_timeout_s:g} s") from None
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        clean = True
    finally:
        if clean:
            response.release()
        else:
            response.close()
