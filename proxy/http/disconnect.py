"""Noticing a client that went away, and cancelling its request at once.

The watch starts listening only once a request has run `WATCH_AFTER_S`, so the fast majority never
pays for a second task; after that an `http.disconnect` from the server cancels the request's task
(which closes the upstream response in its `finally`), unless the answer had already finished.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from starlette.types import Receive

# Listening for a disconnect takes a task of its own; it starts once a request has run this long,
# so most answers from a fast provider never pay for it, and a client that leaves sooner is
# noticed (and its upstream request cancelled) at this point.
WATCH_AFTER_S = 0.005


class Watched(Protocol):
    """What the watch tells the request's record (`proxy.failover.record.RequestRecord.client_left`):
    True when the request is to be cancelled (its answer was not finished)."""

    def client_left(self) -> bool: ...


class DisconnectWatch:
    """Cancels the request's task when its client goes away, listening from `WATCH_AFTER_S` on."""

    __slots__ = ("_task", "_timer")

    def __init__(self, receive: Receive, request: asyncio.Task[None], record: Watched) -> None:
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            WATCH_AFTER_S, self._listen, receive, request, record
        )

    def _listen(self, receive: Receive, request: asyncio.Task[None], record: Watched) -> None:
        self._timer = None
        self._task = asyncio.ensure_future(_watch_disconnect(receive, request, record))

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()


async def _watch_disconnect(receive: Receive, task: asyncio.Task[None], record: Watched) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if record.client_left():
                task.cancel()
            return
