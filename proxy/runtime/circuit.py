"""Circuit breaking, as pure functions over an immutable record.

    closed --(threshold consecutive failures)--> open --(cooldown elapsed)--> half_open
    half_open --(trial succeeds)--> closed          half_open --(trial fails)--> open again

While half-open, one trial request is let through: `take_trial` marks it, and other requests see
the circuit as open until the trial ends (or its claim goes stale after the cooldown).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from proxy.types import CircuitState


@dataclass(frozen=True, slots=True)
class Circuit:
    failures: int = 0  # consecutive failures
    opened_at: float | None = None  # wall clock seconds; None while closed
    trial_at: float | None = None  # when the half-open trial was handed out


CLOSED = Circuit()


def circuit_state(circuit: Circuit, now: float, cooldown_s: float) -> CircuitState:
    if circuit.opened_at is None:
        return CircuitState.CLOSED
    if now - circuit.opened_at < cooldown_s:
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


def record_failure(circuit: Circuit, now: float, threshold: int) -> Circuit:
    """Count a failure; open the circuit at the threshold, or re-open it after a failed trial."""
    failures = circuit.failures + 1
    if circuit.opened_at is not None or failures >= threshold:
        return Circuit(failures=failures, opened_at=now, trial_at=None)
    return Circuit(failures=failures)
