"""The attempt loop's seam to the learned first-output times (`proxy.runtime.first_output`).

Three calls, each one line in the attempt loop:
- `first_output_wait`: before an attempt, how long it may wait for its first output;
- `first_output_seen`: the hook called once the attempt's first output is known (today: a stream's
  first complete event, or a non-streaming answer's status line), which teaches the offer's histogram;
- `first_output_timeout`: the error for an attempt that waited that long, which also teaches (the time
  waited is a lower bound of the offer's time, so a really slower offer raises its own deadline).

The learned deadline only applies when another offer is left to try: with none, failing early would
turn a slow answer into no answer, so the configured `first_byte_timeout_s` holds.
"""

from __future__ import annotations

from proxy.errors import FirstByteTimeout, FirstOutputLate
from proxy.runtime.state import RuntimeState
from proxy.types import Offer


def first_output_wait(state: RuntimeState, offer: Offer, stream: bool, configured_s: float, *, more: bool) -> float:
    """Seconds this attempt may wait for its first output."""
    if not more:
        return configured_s
    return state.first_output.deadline_s(offer.key, stream, configured_s)


def first_output_seen(state: RuntimeState, offer: Offer, stream: bool, seconds: float) -> None:
    """The attempt produced its first output after `seconds`."""
    state.first_output.record(offer.key, stream, seconds)


def first_output_timeout(
    state: RuntimeState, offer: Offer, stream: bool, waited_s: float, configured_s: float
) -> FirstByteTimeout:
    """The attempt waited `waited_s` without output: record that, and say which bound ran out."""
    state.first_output.record(offer.key, stream, waited_s)
    if waited_s < configured_s:
        return FirstOutputLate(
            f"no first output within {waited_s:.3g} s, this offer's learned deadline "
            f"(first_byte_timeout_s is {configured_s:g} s)"
        )
    return FirstByteTimeout(f"no first output within first_byte_timeout_s ({configured_s:g} s)")
