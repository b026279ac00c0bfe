"""The run-time state of one mock provider: its config, its current faults, and what it has seen.

It lives on the server's event loop; other threads change it only through `MockProvider`, which
hops onto that loop first.
"""

from __future__ import annotations

from typing import Any

from proxy.mock.faults.schedule import FaultSchedule
from proxy.mock.log import RequestLog
from proxy.mock.settings import Faults, MockConfig


class MockState:
    def __init__(self, config: MockConfig, faults: Faults | None = None) -> None:
        self.config = config
        self.startup_faults = faults or Faults()
        self.schedule = FaultSchedule(self.startup_faults)
        self.log = RequestLog(config.history)
        self.seq = 0
        self.responses: dict[str, dict[str, Any]] = {}  # Responses API: id -> stored response and input

    @property
    def faults(self) -> Faults:
        return self.schedule.faults

    def set_faults(self, faults: Faults) -> None:
        """Apply new faults; the fail-rate count starts again from request 1."""
        self.schedule = FaultSchedule(faults)

    def reset_faults(self) -> None:
        """Back to the faults the mock started with."""
        self.set_faults(self.startup_faults)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def stats(self) -> dict[str, Any]:
        return {"name": self.config.name, "faults": self.faults.to_json(), **self.log.snapshot()}
