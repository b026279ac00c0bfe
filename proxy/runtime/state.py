"""What this proxy instance has seen of each offer: cooldowns, circuits, passive health, counts.

Everything here lives in process memory and is touched only by the event loop's thread, so no lock
is needed. The attempt loop records outcomes; the ranking reads `views()`. Passive counts pile up
until the health flusher `drain()`s them (issue: passive health in Postgres). Events that other
instances must hear about at once (a cooldown, an opened circuit) go to the `publish` callback.

A way back after a blip: an offer ranked down by what this instance saw (`seen_health` worse than the
catalog's, or its circuit half-open) is due a trial request every `trial_interval_s`
(`RuntimeView.trial_due`), which the ranking serves by the catalog's health alone, even while a
healthier peer exists; `take` hands the trial out, and a trial that succeeds forgets the failures
that ranked the offer down, so it is back at once instead of when they age out of the window.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from proxy.config import HealthSettings, ProxySettings
from proxy.runtime.circuit import CLOSED, Circuit, circuit_state, record_failure, record_success, take_trial
from proxy.runtime.first_output import SLOW_PENALTY_S, FirstOutputTimes
from proxy.runtime.live import FixedSettings, SettingsRef
from proxy.types import NO_VIEW, CircuitState, Health, Offer, OfferKey, PassiveCounts, RuntimeView, StateEvent

EWMA_ALPHA = 0.2
WINDOW_SIZE = 20
WINDOW_SECONDS = 60.0
MIN_SAMPLES = 4
ACCOUNT_REFUSED = "account"  # `cooling_reasons`: the provider refused its own account (key, billing, quota)


@dataclass(slots=True)
class OfferState:
    cooldown_until: float = 0.0
    trial_at: float = 0.0  # when its last trial request was handed out, or it last failed
    on_trial: bool = False  # the attempt under way is a trial: its success forgets the window
    cooldown_reason: str = ""  # the outcome that set the cooldown ("503", "429", "rate_limited"); "" from a peer
    slow_until: float = 0.0  # a first-output timeout: ranked behind its peers until then
    circuit: Circuit = CLOSED
    ewma_ms: float | None = None
    window: deque[tuple[float, bool]] = field(default_factory=lambda: deque(maxlen=WINDOW_SIZE))
    window_failures: int = 0  # failures in `window`, kept as outcomes come and go
    counts: PassiveCounts = field(default_factory=PassiveCounts)

    def observe(self, now: float, ok: bool) -> None:
        window = self.window
        if len(window) == WINDOW_SIZE and not window[0][1]:
            self.window_failures -= 1
        window.append((now, ok))
        if not ok:
            self.window_failures += 1

    def forget(self) -> None:
        self.window.clear()
        self.window_failures = 0

    def passive_health(self, now: float, health: HealthSettings) -> Health:
        """`passive_health` of the window; O(1) in the common case of no recent failure."""
        return passive_health(self.window, now, health) if self.window_failures else Health.UNKNOWN


def seen_health(catalog: Health, passive: Health) -> Health:
    """The catalog's health of an offer made worse (never better) by what this instance saw itself."""
    if passive is Health.UNHEALTHY or catalog is Health.UNHEALTHY:
        return Health.UNHEALTHY
    if passive is Health.DEGRADED:
        return Health.DEGRADED
    return catalog


def passive_health(window: Iterable[tuple[float, bool]], now: float, health: HealthSettings) -> Health:
    """From the recent outcomes this instance saw, by `[health]`'s error ratios (`unknown` below them).
    Outcomes older than a minute are forgotten, so an offer ranked last can earn its place back."""
    recent = [ok for at, ok in window if now - at <= WINDOW_SECONDS]
    if len(recent) < MIN_SAMPLES:
        return Health.UNKNOWN
    return health.health_for_error_ratio(recent.count(False) / len(recent)) or Health.UNKNOWN


class RuntimeState:
    def __init__(
        self,
        settings: ProxySettings | SettingsRef,
        *,
        clock: Callable[[], float] = time.time,
        publish: Callable[[StateEvent], None] | None = None,
        health: HealthSettings | None = None,
    ) -> None:
        """`settings`: the live config's reference (`proxy.runtime.live.Live`), read at each use, or
        fixed values (with `health`)."""
        if isinstance(settings, ProxySettings):
            settings = FixedSettings(settings, health or HealthSettings())
        self._live: SettingsRef = settings
        self.clock = clock
        self.publish = publish
        self.offers: dict[OfferKey, OfferState] = {}
        self.providers: dict[str, Circuit] = {}
        self.provider_cooldowns: dict[str, float] = {}  # slug -> until: its account failed (key, billing, quota)
        self.first_output = FirstOutputTimes()
        self.usage_ask_refusals: set[OfferKey] = set()  # offers that refuse `stream_options` (`refused_usage_ask`)

    @property
    def settings(self) -> ProxySettings:
        return self._live.current.settings

    @property
    def health(self) -> HealthSettings:
        return self._live.current.health

    def _offer(self, key: OfferKey) -> OfferState:
        state = self.offers.get(key)
        if state is None:
            state = self.offers[key] = OfferState()
        return state

    def refused_usage_ask(self, offer: Offer) -> None:
        """`offer` refused `stream_options` (`proxy.failover.usage_ask`): its later streams are sent
        without it, for as long as this instance runs (a limit of the offer, not a failure)."""
        self.usage_ask_refusals.add(offer.key)

    def refuses_usage_ask(self, offer: Offer) -> bool:
        return offer.key in self.usage_ask_refusals

    def provider_circuit(self, provider: str, now: float) -> CircuitState:
        """The state, at `now` (wall clock seconds), of `provider`'s whole-provider circuit."""
        return circuit_state(self.providers.get(provider, CLOSED), now, self._live.current.settings.circuit_cooldown_s)

    def circuit(self, key: OfferKey, now: float) -> CircuitState:
        """The one answer to "what is this offer's circuit state now" (ranking, flush and admin ask it):
        the offer's own circuit, unless its provider's circuit is open, which overrules it."""
        if self.provider_circuit(key[0], now) is CircuitState.OPEN:
            return CircuitState.OPEN
        state = self.offers.get(key)
        cooldown = self._live.current.settings.circuit_cooldown_s
        return CircuitState.CLOSED if state is None else circuit_state(state.circuit, now, cooldown)

    def view(self, offer: Offer, now: float) -> RuntimeView:
        state = self.offers.get(offer.key)
        provider_until = self.provider_cooldowns.get(offer.provider_slug, 0.0) if self.provider_cooldowns else 0.0
        if state is None and offer.provider_slug not in self.providers and not provider_until:
            return NO_VIEW
        state = state or OfferState()
        circuit = self.circuit(offer.key, now)
        passive = state.passive_health(now, self.health)
        return RuntimeView(
            cooldown_until=max(state.cooldown_until, provider_until),
            circuit=circuit,
            latency_ms=state.ewma_ms,
            passive_health=passive,
            slow_until=state.slow_until,
            trial_due=self._trial_due(offer, state, circuit, passive, now),
        )

    def _trial_due(self, offer: Offer, state: OfferState, circuit: CircuitState, passive: Health, now: float) -> bool:
        """Whether the offer is ranked down by what this instance saw (or half-open) and its next trial
        request is due."""
        if passive is Health.UNKNOWN and circuit is not CircuitState.HALF_OPEN:
            return False  # nothing seen here that ranks it down (every healthy offer: checked first, cheaply)
        if now - state.trial_at < self.settings.trial_interval_s:
            return False
        catalog = offer.effective_health
        return circuit is CircuitState.HALF_OPEN or seen_health(catalog, passive).tier > catalog.tier

    def views(self, offers: Iterable[Offer], now: float) -> dict[OfferKey, RuntimeView]:
        return {o.key: self.view(o, now) for o in offers}

    def take(self, offer: Offer, now: float) -> None:
        """The attempt loop is about to try `offer`: claim a half-open trial if there is one, and hand
        out its trial request when it is due one (`trial_due`)."""
        cooldown = self.settings.circuit_cooldown_s
        state = self.offers.get(offer.key)
        if state is not None and (state.window_failures or state.circuit.opened_at is not None):
            circuit = self.circuit(offer.key, now)
            if self._trial_due(offer, state, circuit, state.passive_health(now, self.health), now):
                state.trial_at, state.on_trial = now, True
        if state is not None and state.circuit.opened_at is not None:
            state.circuit = take_trial(state.circuit, now, cooldown)
        provider = self.providers.get(offer.provider_slug)
        if provider is not None and provider.opened_at is not None:
            self.providers[offer.provider_slug] = take_trial(provider, now, cooldown)
        until = self.provider_cooldowns.get(offer.provider_slug) if self.provider_cooldowns else None
        if until is not None and until <= now:
            # The account cooldown is over: this request is the trial that re-checks the provider;
            # the others keep away until it answers (success clears it, another refusal renews it).
            self.provider_cooldowns[offer.provider_slug] = now + self.settings.first_byte_timeout_s

    def record_success(self, offer: Offer, ttfb_ms: float, now: float) -> None:
        state = self._offer(offer.key)
        if state.circuit.opened_at is not None or state.on_trial:
            state.forget()  # a trial succeeded: the failures that ranked it down no longer tell anything
        state.circuit, state.on_trial = record_success(state.circuit), False
        state.slow_until = 0.0
        if offer.provider_slug in self.providers:
            del self.providers[offer.provider_slug]
        if self.provider_cooldowns:
            self.provider_cooldowns.pop(offer.provider_slug, None)
        state.ewma_ms = ttfb_ms if state.ewma_ms is None else state.ewma_ms + EWMA_ALPHA * (ttfb_ms - state.ewma_ms)
        state.observe(now, True)
        counts = state.counts
        counts.successes += 1
        counts.latency_ms_total += ttfb_ms
        counts.last_status = "ok"
        counts.trailing_successes += 1
        counts.trailing_errors = 0

    def record_failure(
        self,
        offer: Offer,
        code: str,
        now: float,
        *,
        connection: bool = False,
        cooldown_s: float | None = None,
        slow: bool = False,
    ) -> None:
        """Count a retryable failure; `connection` errors also count against the whole provider;
        `cooldown_s` (from Retry-After) keeps the offer out of rankings until then; `slow` (no first
        output in time) ranks it behind its peers for `SLOW_PENALTY_S`, so the next request does not wait."""
        state = self._offer(offer.key)
        if slow:
            state.slow_until = max(state.slow_until, now + SLOW_PENALTY_S)
        was_open = state.circuit.opened_at is not None
        state.circuit, state.on_trial = self._failed(state.circuit, now), False
        state.trial_at = max(state.trial_at, now)  # the next trial is due an interval after this failure
        state.observe(now, False)
        state.counts.errors += 1
        state.counts.last_status = state.counts.last_error = code
        state.counts.trailing_errors += 1
        state.counts.trailing_successes = 0
        if state.circuit.opened_at is not None and not was_open:
            self._emit("circuit_open", offer.provider_slug, offer.provider_model_id, now)
        if connection:
            self._provider_failure(offer.provider_slug, now)
        if cooldown_s is not None and cooldown_s > 0:
            self.set_cooldown(offer.key, now + cooldown_s)
            state.cooldown_reason = code
            self._emit("cooldown", offer.provider_slug, offer.provider_model_id, state.cooldown_until)

    def _failed(self, circuit: Circuit, now: float) -> Circuit:
        """A circuit after one more failure: opened for `trial_interval_s`, each failed trial doubling it."""
        settings = self.settings
        return record_failure(
            circuit, now, settings.circuit_failure_threshold,
            first_wait_s=settings.trial_interval_s, max_wait_s=settings.circuit_cooldown_s,
        )  # fmt: skip

    def _provider_failure(self, slug: str, now: float) -> None:
        before = self.providers.get(slug, CLOSED)
        after = self._failed(before, now)
        self.providers[slug] = after
        if after.opened_at is not None and before.opened_at is None:
            self._emit("circuit_open", slug, "", now)

    def set_cooldown(self, key: OfferKey, until: float) -> None:
        """Keep an offer out until `until`; an empty provider model id means every offer of the provider."""
        if not key[1]:
            self.provider_cooldowns[key[0]] = max(self.provider_cooldowns.get(key[0], 0.0), until)
            return
        state = self._offer(key)
        state.cooldown_until = max(state.cooldown_until, until)

    def cooling_reasons(self, offers: Iterable[Offer], now: float) -> tuple[tuple[str, str], ...]:
        """(provider, why) for each of `offers` cooling down at `now`: `ACCOUNT_REFUSED` for a provider
        whose account was refused, else the outcome that set the offer's cooldown ("" when another
        instance told this one)."""
        out: dict[str, str] = {}
        for offer in offers:
            if self.provider_cooldowns.get(offer.provider_slug, 0.0) > now:
                out.setdefault(offer.provider_slug, ACCOUNT_REFUSED)
                continue
            state = self.offers.get(offer.key)
            if state is not None and state.cooldown_until > now:
                out.setdefault(offer.provider_slug, state.cooldown_reason)
        return tuple(out.items())

    def cool_provider(self, slug: str, now: float) -> None:
        """The provider refused its own account (key, billing, quota): none of its offers for
        `account_cooldown_s`, on this instance and (through `publish`) the others."""
        self.set_cooldown((slug, ""), now + self.settings.account_cooldown_s)
        self._emit("cooldown", slug, "", self.provider_cooldowns[slug])

    def open_circuit(self, provider: str, provider_model_id: str, opened_at: float) -> None:
        """Apply a circuit another instance opened (an empty model id means the whole provider)."""
        threshold, first_wait_s = self.settings.circuit_failure_threshold, self.settings.trial_interval_s
        opened = Circuit(failures=threshold, opened_at=opened_at, wait_s=first_wait_s)
        if provider_model_id:
            self._offer((provider, provider_model_id)).circuit = opened
        else:
            self.providers[provider] = opened

    def _emit(self, kind: str, provider: str, provider_model_id: str, until: float) -> None:
        if self.publish is not None:
            self.publish(StateEvent(kind, provider, provider_model_id, until))

    def drain(self) -> dict[OfferKey, PassiveCounts]:
        """Hand over the counts gathered since the last call, and start afresh."""
        out: dict[OfferKey, PassiveCounts] = {}
        for key, state in self.offers.items():
            if state.counts.successes or state.counts.errors:
                out[key] = state.counts
                state.counts = PassiveCounts()
        return out

    def circuit_open(self, offer: Offer, now: float) -> bool:
        return self.circuit(offer.key, now) is CircuitState.OPEN
