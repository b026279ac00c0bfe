"""Which requests a fault hits: reproducible, so a test can say which attempt fails.

Without a seed the hits are spread evenly: the n-th eligible request is hit when
floor(n * fail_rate) grows, so 0.5 hits requests 2, 4, 6... and 1/k every k-th. With a seed they are
drawn from `random.Random(seed)`. Both restart from request 1 whenever the faults are set again.
"""

from __future__ import annotations

import random
from fractions import Fraction

from proxy.mock.settings import Faults


class FaultSchedule:
    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._rate = Fraction(faults.fail_rate).limit_denominator(1_000_000)
        self._rng = random.Random(faults.seed) if faults.seed is not None else None
        self._eligible = 0

    def draw(self, path: str) -> str:
        """The fault to inject into this request: `faults.fault`, or "none" when it is spared."""
        faults = self.faults
        if faults.fault == "none" or not self._applies_to(path):
            return "none"
        self._eligible += 1
        return faults.fault if self._hits() else "none"

    def _applies_to(self, path: str) -> bool:
        prefixes = self.faults.paths
        return not prefixes or any(path.startswith(prefix) for prefix in prefixes)

    def _hits(self) -> bool:
        if self._rng is not None:
            return self._rng.random() < self.faults.fail_rate
        n, rate = self._eligible, self._rate
        return (n * rate.numerator) // rate.denominator > ((n - 1) * rate.numerator) // rate.denominator
