"""The running configuration: one immutable snapshot, swapped whole by a reload.

`LiveConfig` holds what the request path and the background work read of the config, derived once
when the config is loaded or re-read: the settings, the provider keys (and each provider's signed
headers, `proxy.provider_api.sign`), the client keys (and their names and budgets), the secrets to
redact, the model fallbacks and the hedging rules. `Live` is the one reference to the current
snapshot: a reload (`proxy.http.gateway.Gateway.reload`) builds a new `LiveConfig` and assigns
`live.current`; every reader goes through that reference, so no copy of a setting can go stale, and
a request that took the snapshot when it arrived finishes with the settings it started with.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from proxy.config import ClientKey, Config, HealthSettings, ProxySettings, Secret
from proxy.provider_api import sign

MIN_REDACTED_LENGTH = 8  # shorter "keys" are placeholders: replacing them would garble a body

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HedgeRule:
    """Whether a model's requests may be hedged, and the largest share of them that may be."""

    enabled: bool
    budget: float


@dataclass(frozen=True, slots=True)
class LiveConfig:
    """What is read of one config; its repr shows no secret (the keys are `Secret`s or hidden)."""

    config: Config
    settings: ProxySettings  # config.proxy
    health: HealthSettings  # config.health
    provider_keys: Mapping[str, Secret]  # provider slug -> its key
    # provider slug -> the headers that sign a request to it, as its API takes them (a key, a version)
    signed_headers: Mapping[str, Mapping[str, str]] = field(repr=False)
    client_keys: tuple[bytes, ...] = field(repr=False)  # FAILOVER_API_KEYS and [[keys]]; empty = the proxy is open
    key_names: tuple[str, ...]  # the name of each client key, in the same order
    budgets: Mapping[str, ClientKey]  # key name -> the key, for each key with a budget
    secrets: tuple[bytes, ...] = field(repr=False)  # every provider key long enough to look for, longest first
    fallbacks: Mapping[str, tuple[str, ...]]  # canonical model -> the models to try after it
    hedge_default: HedgeRule
    hedge_rules: Mapping[str, HedgeRule]  # per canonical model, where `[[models]]` says
    hedging: bool  # is any model hedged at all

    def hedge_rule(self, model_id: str) -> HedgeRule:
        return self.hedge_rules.get(model_id, self.hedge_default)

    @classmethod
    def of(cls, config: Config) -> LiveConfig:
        default = HedgeRule(config.proxy.hedge, config.proxy.hedge_budget)
        rules = {
            m.model_id: HedgeRule(
                default.enabled if m.hedge is None else m.hedge,
                default.budget if m.hedge_budget is None else m.hedge_budget,
            )
            for m in config.models
        }
        keys = {p.api_key.reveal().encode() for p in config.providers}
        return cls(
            config=config,
            settings=config.proxy,
            health=config.health,
            provider_keys={p.slug: p.api_key for p in config.providers},
            signed_headers={p.slug: _signed(p.api, p.api_key) for p in config.providers},
            client_keys=tuple(k.key.reveal().encode() for k in config.client_keys),
            key_names=tuple(k.name for k in config.client_keys),
            budgets={k.name: k for k in config.client_keys if k.budget_usd is not None},
            secrets=tuple(sorted((k for k in keys if len(k) >= MIN_REDACTED_LENGTH), key=len, reverse=True)),
            fallbacks=config.model_fallbacks,
            hedge_default=default,
            hedge_rules=rules,
            hedging=default.enabled or any(r.enabled for r in rules.values()),
        )


def _signed(api: str, key: Secret) -> dict[str, str]:
    headers: dict[str, str] = {}
    sign(headers, api, key)
    return headers


class Live:
    """The one reference to the running `LiveConfig`; `current` is replaced whole, never edited."""

    __slots__ = ("current",)

    def __init__(self, config: Config) -> None:
        self.current = LiveConfig.of(config)


class SettingsPair(Protocol):
    """What the runtime state reads of a snapshot (a `LiveConfig`, or `FixedSettings`)."""

    @property
    def settings(self) -> ProxySettings: ...
    @property
    def health(self) -> HealthSettings: ...


class SettingsRef(Protocol):
    """A reference to the current settings (`Live`, or `FixedSettings.ref` for a fixed pair)."""

    @property
    def current(self) -> SettingsPair: ...


@dataclass(frozen=True, slots=True)
class FixedSettings:
    """Settings that never change (tests, tools): read through the same reference shape as `Live`."""

    settings: ProxySettings
    health: HealthSettings

    @property
    def current(self) -> FixedSettings:
        return self


def reader(value: T | Callable[[], T]) -> Callable[[], T]:
    """A getter for a setting: the live one (a callable such as `Live.settings`), or a fixed value."""
    if callable(value):
        return value
    return lambda: value
