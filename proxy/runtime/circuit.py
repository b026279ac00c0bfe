"""Circuit breaking, as pure functions over an immutable record.

    closed --(threshold consecutive failures)--> open --(its wait elapsed)--> half_open
    half_open --(trial succeeds)--> closed          half_open --(trial fails)--> open again, twice as long

While half-open, one trial request is let through: `take_trial` marks it, and other requests see
the circuit as open until the trial ends (or its claim goes stale after the cooldown). An opened
circuit waits `first_wait_s` (the proxy's `trial_interval_s`) before its first trial, and each failed
trial doubles the wait, never beyond the cooldown (`circuit_cooldown_s`): an offer that blipped for a
few seconds is back within seconds of recovering, one that stays down is asked ever less often, like
Envoy's outlier ejection time that grows with each ejection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from proxy.types import CircuitState


@dataclass(frozen=True, slots=True)
class Circuit:
    failures: int = 0  # consecutive failures
    opened_at: float | None = None  # wall clock seconds; None while closed
    trial_at: float | None = None  # when the half-open trial was handed out
    wait_s: float | None = None  # open this long before the next trial (at most the cooldown); None: the cooldown


CLOSED = Circuit()


def circuit_state(circuit: Circuit, now: float, cooldown_s: float) -> CircuitState:
    if circuit.opened_at is None:
        return CircuitState.CLOSED
    wait_s = cooldown_s if circuit.wait_s is None else min(circuit.wait_s, cooldown_s)
    if now - circuit.opened_at < wait_s:
        return CircuitState.OPEN
    if circuit.trial_at is not None and now - circuit.trial_at < cooldown_s:
        return CircuitState.OPEN  # a trial is in flight; everyone else waits for its verdict
    return CircuitState.HALF_OPEN


def take_trial(circuit: Circuit, now: float, cooldown_s: float) -> Circuit:
    """Claim the half-open trial (a no-op unless the circuit is half-open)."""
    if circuit_state(circuit, now, cooldown_s) is CircuitState.HALF_OPEN:
        return replace(circuit, trial_at=now)
    return circuit


def record_success(circuit: Circuit) -> Circuit:
    return CLOSED


def record_failure(
    circuit: Circuit, now: float, threshold: int, *, first_wait_s: float | None = None, max_wait_s: float = math.inf
) -> Circuit:
    """Count a failure; open the circuit at the threshold (for `first_wait_s`; None: the cooldown), or
    re-open it after a failed trial for twice its last wait, at most `max_wait_s`."""
    failures = circuit.failures + 1
    if circuit.opened_at is not None:
        wait_s = None if circuit.wait_s is None else min(max_wait_s, circuit.wait_s * 2)
        return Circuit(failures=failures, opened_at=now, trial_at=None, wait_s=wait_s)
    if failures >= threshold:
        return Circuit(failures=failures, opened_at=now, trial_at=None, wait_s=first_wait_s)
    return Circuit(failures=failures)
