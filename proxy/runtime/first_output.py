"""Learned time to first output, per offer: a small decaying histogram and the rules read from it.

Each (offer, streaming or not) keeps a histogram of how long its successful attempts took to their
first output: for a stream, the first event the attempt loop commits on; for a non-streaming answer,
the status line (what `first_byte_timeout_s` bounds). Streams and non-streams are kept apart because a
non-streaming answer arrives only when the whole completion is done, seconds after a stream's first
token: one histogram for both would teach streams to wait too long and non-streams to give up early.

    buckets     geometric, `BUCKET_RATIO` apart from `FIRST_BUCKET_S` (1 ms) up (about 10 min);
                a quantile is read as its bucket's upper bound, so it errs long by at most 20 %
    decay       when the weight reaches `DECAY_AT` every bucket is halved: recent behaviour counts most
    deadline    `learned_deadline_s`: DEADLINE_MULTIPLE x the p99, at least DEADLINE_FLOOR_S, never
                above the configured `first_byte_timeout_s`; the configured timeout until MIN_SAMPLES
    hedge delay `hedge_delay_s`: the p90 (none until MIN_SAMPLES)
    penalty     after a first-output timeout the offer ranks behind its peers for SLOW_PENALTY_S

An attempt that timed out is recorded at the time it waited (a lower bound of its true time), so an
offer that really became slower raises its own deadline step by step instead of failing forever.
Everything here is pure and in process; `RuntimeState` owns one `FirstOutputTimes`.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass

from proxy.types import OfferKey

FIRST_BUCKET_S = 0.001
BUCKET_RATIO = 1.2
BUCKETS = 75  # 1 ms x 1.2^74: about 12 minutes, longer than any sensible first_byte_timeout_s
BOUNDS = tuple(FIRST_BUCKET_S * BUCKET_RATIO**i for i in range(BUCKETS))
DECAY_AT = 256.0
MIN_SAMPLES = 20
HEDGE_QUANTILE = 0.90
DEADLINE_QUANTILE = 0.99
DEADLINE_MULTIPLE = 3.0
DEADLINE_FLOOR_S = 1.0
SLOW_PENALTY_S = 10.0


class FirstOutputHistogram:
    """Weights per bucket; `quantile(q)` is the upper bound of the bucket that holds the q-th share."""

    __slots__ = ("_cumulative", "counts", "recorded", "weight")

    def __init__(self) -> None:
        self.counts = [0.0] * BUCKETS
        self.weight = 0.0
        self.recorded = 0  # samples ever recorded (the weight decays; this does not)
        self._cumulative: list[float] | None = None

    def record(self, seconds: float) -> None:
        self.recorded += 1
        index = min(bisect.bisect_left(BOUNDS, seconds), BUCKETS - 1)
        self.counts[index] += 1.0
        self.weight += 1.0
        self._cumulative = None
        if self.weight >= DECAY_AT:
            self.counts = [c / 2 for c in self.counts]
            self.weight /= 2

    def quantile(self, q: float) -> float:
        """Seconds; 0.0 while empty."""
        if self.weight <= 0:
            return 0.0
        if self._cumulative is None:
            self._cumulative = list(itertools.accumulate(self.counts))
        index = bisect.bisect_left(self._cumulative, q * self.weight - 1e-9)
        return BOUNDS[min(index, BUCKETS - 1)]


@dataclass(frozen=True, slots=True)
class Learned:
    """What one offer's history says, for `explain` and the admin view (seconds; None: too few samples)."""

    samples: int
    first_output_s: float | None  # the median: its usual time to first output
    hedge_delay_s: float | None
    deadline_s: float  # the learned deadline, or the configured timeout


def learned_deadline_s(histogram: FirstOutputHistogram | None, configured_s: float) -> float:
    """How long an attempt at this offer may wait for its first output before it counts as failing."""
    if histogram is None or histogram.weight < MIN_SAMPLES:
        return configured_s
    learned = max(DEADLINE_FLOOR_S, DEADLINE_MULTIPLE * histogram.quantile(DEADLINE_QUANTILE))
    return min(configured_s, learned)


def hedge_delay_s(histogram: FirstOutputHistogram | None) -> float | None:
    """How long to wait on this offer before a hedge is started alongside; None: not enough history."""
    if histogram is None or histogram.weight < MIN_SAMPLES:
        return None
    return histogram.quantile(HEDGE_QUANTILE)


class FirstOutputTimes:
    """Every offer's histograms, keyed by (offer key, stream)."""

    __slots__ = ("_histograms",)

    def __init__(self) -> None:
        self._histograms: dict[tuple[OfferKey, bool], FirstOutputHistogram] = {}

    def record(self, key: OfferKey, stream: bool, seconds: float) -> None:
        histogram = self._histograms.get((key, stream))
        if histogram is None:
            histogram = self._histograms[(key, stream)] = FirstOutputHistogram()
        histogram.record(seconds)

    def recorded(self) -> dict[OfferKey, int]:
        """Samples ever recorded per offer, streams and non-streams together: a change detector."""
        out: dict[OfferKey, int] = {}
        for (key, _), histogram in self._histograms.items():
            out[key] = out.get(key, 0) + histogram.recorded
        return out

    def histogram(self, key: OfferKey, stream: bool) -> FirstOutputHistogram | None:
        return self._histograms.get((key, stream))

    def deadline_s(self, key: OfferKey, stream: bool, configured_s: float) -> float:
        return learned_deadline_s(self._histograms.get((key, stream)), configured_s)

    def hedge_delay_s(self, key: OfferKey, stream: bool) -> float | None:
        return hedge_delay_s(self._histograms.get((key, stream)))

    def learned(self, key: OfferKey, stream: bool, configured_s: float) -> Learned:
        histogram = self._histograms.get((key, stream))
        delay = hedge_delay_s(histogram)
        return Learned(
            samples=round(histogram.weight) if histogram is not None else 0,
            first_output_s=histogram.quantile(0.5) if delay is not None and histogram is not None else None,
            hedge_delay_s=delay,
            deadline_s=learned_deadline_s(histogram, configured_s),
        )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def learned_json(times: FirstOutputTimes, key: OfferKey, configured_s: float) -> dict[str, dict[str, object]]:
    """One offer's learned times as the admin view shows and `model_health_tracking.first_output` keeps
    them: `stream` and `non_stream`, each {samples, usual_ms (median), hedge_delay_ms, deadline_s}."""
    out: dict[str, dict[str, object]] = {}
    for kind, stream in (("stream", True), ("non_stream", False)):
        learned = times.learned(key, stream, configured_s)
        out[kind] = {
            "samples": learned.samples,
            "usual_ms": _ms(learned.first_output_s),
            "hedge_delay_ms": _ms(learned.hedge_delay_s),
            "deadline_s": round(learned.deadline_s, 3),
        }
    return out
