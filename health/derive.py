"""Deriving health: pure functions from what was observed of an offer to `healthy | degraded | ...`.

An offer's status moves with hysteresis, so one error never flips it and one success never
redeems it:

    unknown   --first success-------------------------------------------> healthy | degraded
    any       --failures_to_unhealthy consecutive failures, or `unhealthy_error_ratio` of
                the recent outcomes failed (with enough of them)------------> unhealthy
    unhealthy --successes_to_healthy consecutive successes--------------> healthy | degraded
    healthy   <-> degraded   on latency over degraded_latency_ms, or `degraded_error_ratio` of recent outcomes failed

"Recent" is what was added to the offer's counts since the worker's previous round (probes and the
proxies' traffic alike). A provider's roll-up is the state of most of its offers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from proxy.config import HealthSettings
from proxy.types import Health

MIN_RATIO_SAMPLES = 10
_DEFAULTS = HealthSettings()


@dataclass(frozen=True, slots=True)
class Thresholds:
    failures_to_unhealthy: int = 3
    successes_to_healthy: int = 2
    degraded_latency_ms: float = 5_000.0
    min_ratio_samples: int = MIN_RATIO_SAMPLES
    unhealthy_error_ratio: float = _DEFAULTS.unhealthy_error_ratio
    degraded_error_ratio: float = _DEFAULTS.degraded_error_ratio

    @classmethod
    def from_settings(cls, settings: HealthSettings) -> Thresholds:
        return cls(
            failures_to_unhealthy=settings.failures_to_unhealthy,
            successes_to_healthy=settings.successes_to_healthy,
            degraded_latency_ms=settings.degraded_latency_ms,
            unhealthy_error_ratio=settings.unhealthy_error_ratio,
            degraded_error_ratio=settings.degraded_error_ratio,
        )


@dataclass(frozen=True, slots=True)
class Signals:
    """What is known of one offer: its tracking row, and the outcomes added since the last round."""

    observed: bool = False  # any outcome ever recorded
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    latency_ms: float | None = None  # the tracking row's EWMA
    recent_successes: int = 0
    recent_errors: int = 0

    def error_ratio(self, min_samples: int) -> float | None:
        """The share of recent outcomes that failed, or None with fewer than `min_samples`."""
        total = self.recent_successes + self.recent_errors
        return self.recent_errors / total if total >= max(min_samples, 1) else None


def derive_offer_health(previous: Health, signals: Signals, thresholds: Thresholds) -> Health:
    """The offer's new status, given its previous one and what was observed."""
    if not signals.observed:
        return previous
    ratio = signals.error_ratio(thresholds.min_ratio_samples)
    if _failing(signals, ratio, thresholds):
        return Health.UNHEALTHY
    if previous is Health.UNHEALTHY and signals.consecutive_successes < thresholds.successes_to_healthy:
        return Health.UNHEALTHY
    if previous is Health.UNKNOWN and signals.consecutive_successes == 0:
        return Health.UNKNOWN  # only failures so far, too few to call it
    return Health.DEGRADED if _degraded(signals, ratio, thresholds) else Health.HEALTHY


def _failing(signals: Signals, ratio: float | None, thresholds: Thresholds) -> bool:
    if signals.consecutive_failures >= thresholds.failures_to_unhealthy:
        return True
    return ratio is not None and ratio >= thresholds.unhealthy_error_ratio


def _degraded(signals: Signals, ratio: float | None, thresholds: Thresholds) -> bool:
    if signals.latency_ms is not None and signals.latency_ms >= thresholds.degraded_latency_ms:
        return True
    return ratio is not None and ratio >= thresholds.degraded_error_ratio


def derive_provider_health(offers: Iterable[Health]) -> Health:
    """The roll-up: unhealthy when every known offer is, degraded when most are unwell, else healthy."""
    known = [h for h in offers if h is not Health.UNKNOWN]
    if not known:
        return Health.UNKNOWN
    if all(h is Health.UNHEALTHY for h in known):
        return Health.UNHEALTHY
    unwell = sum(h in (Health.UNHEALTHY, Health.DEGRADED) for h in known)
    return Health.DEGRADED if unwell * 2 > len(known) else Health.HEALTHY


def mean_latency(values: Iterable[float | None]) -> float | None:
    """The mean of the known latencies (a provider's `average_response_time_ms`), or None."""
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def success_rate(successes: int, errors: int) -> float | None:
    total = successes + errors
    return successes / total if total else None


@dataclass(frozen=True, slots=True)
class OfferInput:
    """One active offer as the round reads it: its stored status and its tracking row's counts."""

    offer_id: int
    model_id: str
    provider_slug: str
    provider_model_id: str
    health: Health
    success_count: int = 0
    error_count: int = 0
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    latency_ms: float | None = None
    observed: bool = False


@dataclass(frozen=True, slots=True)
class OfferDecision:
    offer: OfferInput
    health: Health
    success_rate: float | None

    @property
    def changed(self) -> bool:
        return self.health is not self.offer.health


@dataclass(frozen=True, slots=True)
class RoundDecision:
    offers: tuple[OfferDecision, ...]
    providers: dict[str, tuple[Health, float | None]]  # slug -> (roll-up, mean latency)
    changed_models: frozenset[str]  # models whose ranking may differ: an offer's or a provider's status moved

    def by_offer(self) -> dict[int, Health]:
        return {d.offer.offer_id: d.health for d in self.offers}


Counts = tuple[int, int]  # (success_count, error_count) of a tracking row


def decide_round(
    inputs: Iterable[OfferInput],
    previous_counts: dict[int, Counts],
    providers_before: dict[str, Health],
    thresholds: Thresholds,
) -> RoundDecision:
    """Every offer's new status (recent outcomes: counts added since `previous_counts`), the providers'
    roll-ups, and which models' rankings changed."""
    decisions = []
    for offer in inputs:
        before = previous_counts.get(offer.offer_id)
        recent = (offer.success_count - before[0], offer.error_count - before[1]) if before else (0, 0)
        signals = Signals(
            observed=offer.observed,
            consecutive_failures=offer.consecutive_failures,
            consecutive_successes=offer.consecutive_successes,
            latency_ms=offer.latency_ms,
            recent_successes=max(recent[0], 0),
            recent_errors=max(recent[1], 0),
        )
        health = derive_offer_health(offer.health, signals, thresholds)
        decisions.append(OfferDecision(offer, health, success_rate(offer.success_count, offer.error_count)))
    providers = _roll_up(decisions)
    moved = {slug for slug, (health, _) in providers.items() if providers_before.get(slug) is not health}
    changed = {d.offer.model_id for d in decisions if d.changed or d.offer.provider_slug in moved}
    return RoundDecision(tuple(decisions), providers, frozenset(changed))


def _roll_up(decisions: Iterable[OfferDecision]) -> dict[str, tuple[Health, float | None]]:
    by_provider: dict[str, list[OfferDecision]] = {}
    for decision in decisions:
        by_provider.setdefault(decision.offer.provider_slug, []).append(decision)
    return {
        slug: (derive_provider_health(d.health for d in offers), mean_latency(d.offer.latency_ms for d in offers))
        for slug, offers in by_provider.items()
    }
