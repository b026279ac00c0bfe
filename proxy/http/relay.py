"""Relaying a committed stream to the client, chunk by chunk, as it arrives.

The held bytes up to the first output were read before commit (so a failure before them failed
over). From here on the 200 is sent, so a failure cannot be retried. How a stream ends:

- complete: its final event went out (`[DONE]`, or a typed stream's terminal event such as
  `response.completed`: the watch, `proxy.upstream.sse.RelayWatch`, says which; `on_final()` is
  called as it is sent, so a client that hangs up right after reading it, as the openai SDK does, is
  a finished answer and not a disconnect), or the body ended cleanly after every expected choice
  reported a `finish_reason` (a `[DONE]` is then added, so the client still gets a well-formed end);
- the provider reported an error inside the stream: relayed as it came, nothing added, and returned
  as `StreamErrorEvent` so it is counted as a failure;
- otherwise (a cut, `stream_idle_timeout_s` without a data event, a body that ended incomplete): one
  SSE error event of ours and no `[DONE]`, so the client sees a failure and never a clean truncation.

Comments (keep-alives) are relayed but do not reset the idle timer: a provider that only sends
comments is ended after `stream_idle_timeout_s`. The caller cancels this coroutine when the client
disconnects; the upstream response is closed in the `finally` either way.

A stream the client reads in another API than the offer's (`translation`, a
`proxy.dialects.relaying.StreamTranslation`) goes out as the translation makes it from each chunk,
and ends with the translation's own endings in place of `[DONE]` and the error event above; the
watch keeps judging the offer's bytes.

`relay_bytes` relays a binary answer (speech audio) as it comes, with the same idle bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from proxy.dialects.relaying import StreamTranslation
from proxy.errors import StreamBroken, StreamErrorEvent, StreamIdle, UpstreamError
from proxy.http.answers import error_body
from proxy.types import Send
from proxy.upstream.answer_model import StreamRewrite
from proxy.upstream.client import UpstreamResponse
from proxy.upstream.sse import RelayWatch
from proxy.upstream.usage_stream import UsageStage

DONE_EVENT = b"data: [DONE]\n\n"
AFTER_DONE_S = 1.0  # after `[DONE]`, how long the provider has to end its body before it is closed


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

    def shorten(self, idle_s: float) -> None:
        """From now on, allow only `idle_s` more (after the stream's final event)."""
        self._idle_s = idle_s
        self.touch()
        self._handle.cancel()
        self._handle = self._loop.call_at(self._last + idle_s, self._check)

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
    send: Send,
    response: UpstreamResponse,
    first: bytes,
    *,
    idle_timeout_s: float,
    watch: RelayWatch,
    on_final: Callable[[], None],
    translation: StreamTranslation | None = None,
    rewrite: StreamRewrite | None = None,
    usage: UsageStage | None = None,
) -> UpstreamError | None:
    """Send `first` and every later chunk; return the failure that ended the stream, or None.
    `usage` (`proxy.upstream.usage_stream`) keeps the proxy's ask for usage out of the provider's
    bytes, `rewrite` (`proxy.upstream.answer_model`) names the canonical model in them, and
    `translation` (`proxy.dialects`) turns them into the client's API, in that order; the watch sees
    the provider's bytes as they came."""
    ended = False  # the provider's body ended cleanly: its connection can go back to the pool
    outgoing = (
        None if rewrite is None and translation is None and usage is None else _Outgoing(usage, rewrite, translation)
    )
    try:
        failure = await _pump(
            send, response, first, idle_s=idle_timeout_s, watch=watch, on_final=on_final, outgoing=outgoing
        )
        ended = failure is None
        ending, error = _ending(watch, failure, translation)
        if outgoing is not None:  # what the stages held of an unfinished event goes out before the ending
            ending = outgoing.finish() + ending
        await send({"type": "http.response.body", "body": ending, "more_body": False})
        on_final()
        return error
    finally:
        if ended:
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


async def _pump(
    send: Send,
    response: UpstreamResponse,
    first: bytes,
    *,
    idle_s: float,
    watch: RelayWatch,
    on_final: Callable[[], None],
    outgoing: _Outgoing | None,
) -> UpstreamError | None:
    watch.feed(first)
    if watch.done:
        on_final()  # before the send: a client that hangs up on reading it has its whole answer
    sent = first if outgoing is None else outgoing.feed(first)
    await send({"type": "http.response.body", "body": sent, "more_body": True})
    try:
        async with asyncio.timeout(None) as timer:
            idle = IdleWatch(timer, AFTER_DONE_S if watch.done else idle_s)
            try:
                done = watch.done
                async for chunk in response.chunks():
                    progress = watch.feed(chunk)
                    if not done and watch.done:
                        done = True
                        on_final()
                        idle.shorten(AFTER_DONE_S)
                    sent = chunk if outgoing is None else outgoing.feed(chunk)
                    await send({"type": "http.response.body", "body": sent, "more_body": True})
                    if progress and not done:
                        idle.touch()
            finally:
                idle.close()
    except TimeoutError:
        return StreamIdle(f"the provider sent no data for {idle_s:g} s")
    except UpstreamError as exc:
        return exc
    watch.close()
    return None


class _Outgoing:
    """What the client is sent for each chunk of the provider's: the chunk itself, or what the usage
    stage, the rewrite and the translation make of it, in that order (a plain stream has none: the
    relay sends its chunks as they are)."""

    __slots__ = ("rewrite", "translation", "usage")

    def __init__(
        self, usage: UsageStage | None, rewrite: StreamRewrite | None, translation: StreamTranslation | None
    ) -> None:
        self.usage, self.rewrite, self.translation = usage, rewrite, translation

    def finish(self) -> bytes:
        """What the stages held of an unfinished event, through the stages after each."""
        held = b"" if self.usage is None else self.usage.finish()
        if self.rewrite is not None:
            held = self.rewrite.finish(held)
        return held if self.translation is None or not held else self.translation.feed(held)

    def feed(self, chunk: bytes) -> bytes:
        if self.usage is not None:
            chunk = self.usage.feed(chunk)
        if self.rewrite is not None:
            chunk = self.rewrite.feed(chunk)
        if self.translation is not None:
            chunk = self.translation.feed(chunk)
        return chunk


def _ending(
    watch: RelayWatch, error: UpstreamError | None, translation: StreamTranslation | None = None
) -> tuple[bytes, UpstreamError | None]:
    """What to send last, and the stream's failure (None when it is complete); in the client's
    API when a `translation` says how that API ends a stream."""
    if watch.provider_error:
        return b"", StreamErrorEvent("the provider reported an error inside the stream")
    if watch.done:
        return b"", None
    if error is None:
        if watch.complete:
            if translation is not None:
                return translation.finish(watch.unterminated), None
            return (b"\n\n" if watch.unterminated else b"") + DONE_EVENT, None
        error = StreamBroken("the provider's stream ended before it was complete")
    return (error_event(error) if translation is None else translation.failed(error)), error
