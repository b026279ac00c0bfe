"""What every channel that shares cooldowns and opened circuits between instances has in common.

An instance's `RuntimeState` calls `publish(event)` on the request path: the event only goes into a
bounded outbox (no I/O), and the channel's sender takes out what is still in force. An event heard
from another instance is applied to the local `RuntimeState`; this instance's own are ignored.
The channels: Redis pub/sub (`proxy.runtime.sharing.peers`) and, without Redis, Postgres NOTIFY
(`proxy.runtime.sharing.pg_peers`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque

from proxy.runtime.state import RuntimeState
from proxy.types import StateEvent

OUTBOX_LIMIT = 1000


class StateExchange:
    def __init__(self, state: RuntimeState) -> None:
        self.state = state
        self.instance_id = uuid.uuid4().hex
        self.received = 0  # events from other instances applied here
        self._outbox: deque[StateEvent] = deque(maxlen=OUTBOX_LIMIT)
        self._wake = asyncio.Event()

    def publish(self, event: StateEvent) -> None:
        """Queue an event for the other instances; called on the request path, so no I/O here."""
        self._outbox.append(event)
        self._wake.set()

    def horizon(self, event: StateEvent) -> float:
        """Until when an event matters: a cooldown's end, or an open circuit's first trial."""
        return event.until if event.kind == "cooldown" else event.until + self.state.settings.circuit_cooldown_s

    def apply(self, event: StateEvent, origin: str) -> None:
        """Apply another instance's event to the local state (this instance's own are skipped)."""
        if origin == self.instance_id:
            return
        if event.kind == "cooldown":
            self.state.set_cooldown((event.provider, event.provider_model_id), event.until)
        else:
            self.state.open_circuit(event.provider, event.provider_model_id, event.until)
        self.received += 1

    def fresh_events(self, now: float) -> list[StateEvent]:
        """Take the outbox, leaving out cooldowns already over and circuits that opened too long ago."""
        events = []
        while self._outbox:
            event = self._outbox.popleft()
            if self.horizon(event) > now:
                events.append(event)
        return events

    def requeue(self, events: list[StateEvent]) -> None:
        """Put back events a failed send did not deliver, ahead of newer ones."""
        self._outbox.extendleft(reversed(events))

    async def wait_for_events(self) -> None:
        if not self._outbox:  # events left by a failed send go out first
            await self._wake.wait()
        self._wake.clear()
