"""Reading the request body without a timer when uvicorn already holds it: the whole body still
arrives in order, a body whose rest never comes still gets 408 in time, a client that leaves is seen."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from proxy.errors import BodyTooLarge, ClientDisconnected, RequestTimeout
from proxy.http.body import body_in_hand, read_body


class Cycle:
    """uvicorn's request cycle as the handler sees it: `receive` bound to an object with `message_event`."""

    def __init__(self, messages: list[dict[str, Any]], in_hand: bool) -> None:
        self.messages = messages
        self.message_event = asyncio.Event()
        if in_hand:
            self.message_event.set()

    async def receive(self) -> dict[str, Any]:
        if not self.messages:
            await asyncio.sleep(3600)  # the rest never comes
        return self.messages.pop(0)


def _parts(*chunks: bytes) -> list[dict[str, Any]]:
    return [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]


async def test_a_body_in_hand_is_read_whole_and_in_order() -> None:
    one = Cycle(_parts(b'{"model":"x"}'), in_hand=True)
    assert body_in_hand(one.receive)
    assert await read_body(one.receive, {}, 1000, 5.0) == b'{"model":"x"}'
    several = Cycle(_parts(b'{"mo', b'del":', b'"x"}'), in_hand=True)
    assert await read_body(several.receive, {}, 1000, 5.0) == b'{"model":"x"}'
    waiting = Cycle(_parts(b"{}"), in_hand=False)
    assert not body_in_hand(waiting.receive)
    assert await read_body(waiting.receive, {}, 1000, 5.0) == b"{}"


async def test_the_rest_of_a_body_in_hand_is_still_bounded_in_time() -> None:
    cycle = Cycle(_parts(b'{"model":', b"never sent"), in_hand=True)
    cycle.messages.pop()  # only the first part ever arrives
    started = time.monotonic()
    with pytest.raises(RequestTimeout):
        await read_body(cycle.receive, {}, 1000, 0.2)
    assert time.monotonic() - started < 5


async def test_a_body_in_hand_is_still_limited_and_a_disconnect_is_seen() -> None:
    with pytest.raises(BodyTooLarge):
        await read_body(Cycle(_parts(b"x" * 2000), in_hand=True).receive, {}, 1000, 5.0)
    gone = Cycle([{"type": "http.disconnect"}], in_hand=True)
    with pytest.raises(ClientDisconnected):
        await read_body(gone.receive, {}, 1000, 5.0)
