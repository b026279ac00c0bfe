"""Reconnect delays: exponential, capped, with jitter so that many instances do not retry in step."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    initial_s: float = 0.1
    max_s: float = 5.0
    factor: float = 2.0
    jitter: float = 0.2  # each delay is spread by up to this share either way
    rng: random.Random = field(default_factory=random.Random, repr=False)
    _next_s: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._next_s = self.initial_s

    def next(self) -> float:
        """The delay before the next try; each call grows the one after, up to `max_s`."""
        delay = self._next_s
        self._next_s = min(self.max_s, self._next_s * self.factor)
        return delay * (1 + self.rng.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        """A try succeeded: the next failure starts again from `initial_s`."""
        self._next_s = self.initial_s
