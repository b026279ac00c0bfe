"""The configuration: one frozen dataclass built from the TOML file and an injectable environment.

`load_config(path, env)` validates everything at start-up and raises `ConfigError` with a message
that names the file and the key. Secrets are only ever named by env var in the file; their values
live in `Secret`, whose repr and str never show them.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from proxy.client_keys import is_key_name, split_entries
from proxy.config_reader import TableReader, check_positive, check_share, check_url
from proxy.errors import ConfigError
from proxy.provider_api import ANTHROPIC, ANTHROPIC_ENDPOINTS
from proxy.types import APIS, ENDPOINTS, QUANTIZATIONS, Health, Strategy

DEFAULT_CONFIG_PATH = "failover.toml"
LISTING_FORMATS = ("openai", "openrouter", "together", "none")
PROBE_KINDS = ("chat", "listing", "none")
PRICING_UNITS = ("token", "1k", "1m")  # a listing's prices are USD per token, per 1,000 or per 1,000,000 tokens
DATA_COLLECTION = ("allow", "deny")
ANSWER_MODELS = ("canonical", "provider")  # `[proxy] answer_model`
BUDGET_PERIODS = ("day", "month")  # `[[keys]] budget_period`: a UTC calendar day or month
KEY_TABLE_KEYS = ("name", "key_env", "budget_usd", "budget_period")


class Secret:
    """A secret value that never shows itself in a repr, a log line or an f-string."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class ProxySettings:
    host: str = "127.0.0.1"
    port: int = 8080
    strategy: Strategy = Strategy.BALANCED
    max_attempts: int = 3
    deadline_s: float = 120.0
    connect_timeout_s: float = 5.0
    first_byte_timeout_s: float = 60.0
    stream_idle_timeout_s: float = 60.0
    max_body_bytes: int = 10_000_000
    circuit_failure_threshold: int = 5  # consecutive failures that open an offer's circuit
    circuit_cooldown_s: float = 30.0  # the longest an open circuit waits between two half-open trials
    # A way back after a blip: an offer this instance ranked down (its own passive health, or an open
    # circuit) gets one trial request this often, ranked as the catalog says; a good one brings it back.
    # An opened circuit's first trial comes this long after it opened, each failed trial doubles the wait.
    trial_interval_s: float = 2.0
    default_cooldown_s: float = 5.0  # a 429/503 without Retry-After cools the offer this long
    account_cooldown_s: float = 300.0  # a provider's 401/402/403 or quota refusal cools every offer of it this long
    catalog_ttl_s: float = 30.0  # safety-net refresh of the in-process catalog
    health_flush_s: float = 5.0  # how often passive counts are flushed to Postgres
    shutdown_grace_s: float = 30.0  # in-flight requests get this long on SIGTERM
    # An idle client connection stays open this long. The rule: longer than every client and load
    # balancer in front keeps an idle connection for reuse (httpx and the openai SDKs 5 s, undici 4 s,
    # aiohttp 15 s, AWS ALB 60 s), so that the client always closes first; a server that closes first
    # races a request the client is already writing into the connection, and that request is lost.
    keep_alive_s: float = 75.0
    response_pin_ttl_s: float = 2_592_000.0  # how long a Responses API response id stays pinned to its offer
    hedge: bool = False  # hedged requests (proxy.failover.hedge); [[models]] may say otherwise per model
    hedge_budget: float = 0.1  # the largest share of a model's requests that may be hedged, in (0, 1]
    second_opinion: bool = True  # a 400/422 of unknown kind is asked once of another provider's offer
    budget_sync_s: float = 1.0  # how often each instance shares its keys' spend and reads the others'
    # The `model` an answer names: "canonical" (the canonical model that served, in a JSON answer and in
    # every stream event, `proxy.upstream.answer_model`), or "provider" (the serving offer's own id).
    answer_model: str = "canonical"


@dataclass(frozen=True, slots=True)
class UsageSettings:
    """`[usage]`: the usage records (`proxy.billing.writer`). `enabled` None: on when a database is
    configured (`Config.usage_enabled`)."""

    enabled: bool | None = None
    flush_s: float = 1.0  # records wait at most this long in memory before they are written (or spooled)
    batch_size: int = 500  # a batch this full is written at once, without waiting for `flush_s`
    spool_max_mb: float = 64.0  # the spool file's bound while Postgres is down; past it records are dropped
    retention_days: int = 90  # rows older than this are deleted, in batches, every `retention_check_s`
    retention_check_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class HealthSettings:
    interval_s: float = 30.0
    probe_timeout_s: float = 10.0
    concurrency: int = 8
    jitter_s: float = 1.0
    failures_to_unhealthy: int = 3
    successes_to_healthy: int = 2
    degraded_latency_ms: float = 5_000.0
    degraded_error_ratio: float = 0.25  # this share of recent outcomes failed: degraded
    unhealthy_error_ratio: float = 0.5  # this share failed (with enough outcomes): unhealthy
    history_retention_days: float = 7.0
    traffic_history_interval_s: float = 60.0

    def health_for_error_ratio(self, ratio: float) -> Health | None:
        """`unhealthy` or `degraded` when the share of failed outcomes (0..1) reaches its threshold, else None.

        The one rule behind the worker's derived status, the traffic history rows and this
        instance's passive health in ranking."""
        if ratio >= self.unhealthy_error_ratio:
            return Health.UNHEALTHY
        if ratio >= self.degraded_error_ratio:
            return Health.DEGRADED
        return None


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    slug: str
    name: str
    base_url: str
    api_key_env: str = ""
    listing: str = "openai"
    priority: int = 0
    is_active: bool = True
    probe: str = "chat"
    endpoints: tuple[str, ...] = ENDPOINTS  # the endpoint kinds its offers serve (an offer may narrow them)
    pricing_unit: str | None = None  # None: the listing format's own unit (openrouter: token, together: 1m)
    data_collection: str | None = None  # declared policy: "allow" or "deny"; None = not declared
    zdr: bool | None = None
    quantization: str | None = None
    api: str = "openai"  # the API it speaks (`proxy.types.APIS`; `proxy.provider_api`)
    # `failover sync`: a listing that fails (or answers with no models while the catalog holds listed
    # offers of it) this many syncs in a row has its listed offers deactivated; before that they stay
    listing_failures_to_deactivate: int = 3
    api_key: Secret = field(default_factory=lambda: Secret(""), compare=False)

    def served_endpoints(self, narrowed: Iterable[str] | None) -> frozenset[str]:
        """What one of its offers serves: this provider's `endpoints`, narrowed by the offer's own
        (from the config or a listing; None: not narrowed)."""
        endpoints = frozenset(self.endpoints)
        return endpoints if narrowed is None else endpoints & frozenset(narrowed)


@dataclass(frozen=True, slots=True)
class StaticOffer:
    provider: str
    provider_model_id: str
    pricing_prompt: float | None = None
    pricing_completion: float | None = None
    pricing_request: float | None = None
    pricing_cached_prompt: float | None = None  # USD per cached prompt token; None: the prompt price
    context_length: int | None = None
    supports_streaming: bool = True
    endpoints: tuple[str, ...] | None = None  # narrows the provider's `endpoints` for this offer
    max_completion_tokens: int | None = None
    supported_parameters: tuple[str, ...] | None = None
    input_modalities: tuple[str, ...] | None = None
    data_collection: str | None = None  # overrides the provider's declaration for this offer
    zdr: bool | None = None
    quantization: str | None = None


@dataclass(frozen=True, slots=True)
class ModelConfig:
    model_id: str
    offers: tuple[StaticOffer, ...] = ()
    fallbacks: tuple[str, ...] = ()  # canonical models tried, in order, when every offer of this one failed
    hedge: bool | None = None  # None: [proxy] hedge
    hedge_budget: float | None = None  # None: [proxy] hedge_budget


@dataclass(frozen=True, slots=True)
class ClientKey:
    """A client key: its name (the only thing ever shown), the key, and an optional budget in USD per
    UTC day or month (`budget_usd` None: no budget). From `FAILOVER_API_KEYS` or a `[[keys]]` table."""

    name: str
    key: Secret = field(compare=False)
    key_env: str = ""  # the variable a `[[keys]]` table names ("": an entry of FAILOVER_API_KEYS)
    budget_usd: Decimal | None = None
    budget_period: str = "month"


@dataclass(frozen=True, slots=True)
class Config:
    source: str
    proxy: ProxySettings
    health: HealthSettings
    providers: tuple[ProviderConfig, ...]
    models: tuple[ModelConfig, ...]
    aliases: tuple[tuple[str, str], ...]
    database_url: Secret | None = None
    redis_url: Secret | None = None
    client_keys: tuple[ClientKey, ...] = ()
    admin_token: Secret | None = None
    data_dir: str = ".failover"
    redis_prefix: str = "gatewayz"
    usage: UsageSettings = field(default_factory=UsageSettings)

    @property
    def usage_enabled(self) -> bool:
        """Whether requests leave usage records: `[usage] enabled`, by default when a database is configured."""
        enabled = self.usage.enabled
        return self.database_url is not None if enabled is None else enabled and self.database_url is not None

    def provider(self, slug: str) -> ProviderConfig | None:
        for provider in self.providers:
            if provider.slug == slug:
                return provider
        return None

    @property
    def model_fallbacks(self) -> dict[str, tuple[str, ...]]:
        """Canonical model -> the models its `[[models]] fallbacks` names, in order."""
        return {m.model_id: m.fallbacks for m in self.models if m.fallbacks}

    @property
    def api_keys(self) -> tuple[Secret, ...]:
        """Every client key (`FAILOVER_API_KEYS`, then `[[keys]]`); empty: the proxy is open."""
        return tuple(k.key for k in self.client_keys)

    @property
    def alias_map(self) -> dict[str, str]:
        return dict(self.aliases)

    def providers_without_key(self) -> list[ProviderConfig]:
        """Active providers that name a key variable which is unset or empty: every request to them
        would go out without `Authorization`. (A provider that needs no key names no variable.)"""
        return [p for p in self.providers if p.is_active and p.api_key_env and not p.api_key]

    def key_warnings(self) -> list[str]:
        """One line per provider without its key, naming the variable, for start-up logs."""
        return [
            f"provider {p.slug}: {p.api_key_env} is not set, so requests to it go out without a key "
            f"(set it, or remove api_key_env from {self.source} if {p.slug} needs none)"
            for p in self.providers_without_key()
        ]

    def secrets(self) -> list[str]:
        """Every secret value this config holds, for tests and log scrubbing."""
        values = [p.api_key.reveal() for p in self.providers if p.api_key]
        values += [k.reveal() for k in self.api_keys]
        if self.admin_token:
            values.append(self.admin_token.reveal())
        return values


def _policies(reader: TableReader, item: ProviderConfig | StaticOffer, where: str) -> None:
    reader.choice(f"{where}.data_collection", item.data_collection, DATA_COLLECTION)
    reader.choice(f"{where}.quantization", item.quantization, QUANTIZATIONS)


def _providers(reader: TableReader, raw: Any, env: Mapping[str, str]) -> tuple[ProviderConfig, ...]:
    if not isinstance(raw, list):
        raise reader.fail("providers", "expected an array of tables ([[providers]])")
    seen: set[str] = set()
    out = []
    for i, item in enumerate(raw):
        where = f"providers[{i}]"
        if not isinstance(item, dict):
            raise reader.fail(where, "expected a table")
        provider = reader.table(item, ProviderConfig, where, skip=("api_key",))
        if not provider.slug or provider.slug != provider.slug.strip() or "/" in provider.slug:
            raise reader.fail(f"{where}.slug", f"not a usable slug: {provider.slug!r}")
        if provider.slug in seen:
            raise reader.fail(f"{where}.slug", f"duplicate provider slug {provider.slug!r}")
        if not provider.base_url.startswith(("http://", "https://")):
            raise reader.fail(f"{where}.base_url", "must start with http:// or https://")
        if provider.listing not in LISTING_FORMATS:
            raise reader.fail(f"{where}.listing", f"expected one of {' | '.join(LISTING_FORMATS)}")
        if provider.probe not in PROBE_KINDS:
            raise reader.fail(f"{where}.probe", f"expected one of {' | '.join(PROBE_KINDS)}")
        reader.choice(f"{where}.pricing_unit", provider.pricing_unit, PRICING_UNITS)
        if provider.listing_failures_to_deactivate < 1:
            value = provider.listing_failures_to_deactivate
            raise reader.fail(f"{where}.listing_failures_to_deactivate", f"must be at least 1, got {value}")
        _policies(reader, provider, where)
        provider = _spoken(reader, provider, where, given="endpoints" in item)
        seen.add(provider.slug)
        raw_key = env.get(provider.api_key_env, "") if provider.api_key_env else ""
        key = _provider_key(reader, f"{where}.api_key_env", raw_key)
        out.append(_replace(provider, base_url=provider.base_url.rstrip("/"), api_key=key))
    return tuple(out)


def _spoken(reader: TableReader, provider: ProviderConfig, where: str, *, given: bool) -> ProviderConfig:
    """`api` checked; an Anthropic-speaking provider serves chat only (its offers take chat requests,
    translated, and `/v1/messages` natively): its `endpoints` default to that, and may name nothing else."""
    reader.choice(f"{where}.api", provider.api, APIS)
    if provider.api != ANTHROPIC:
        return provider
    if given and set(provider.endpoints) - set(ANTHROPIC_ENDPOINTS):
        raise reader.fail(f"{where}.endpoints", 'a provider with api = "anthropic" serves only ["chat"]')
    return _replace(provider, endpoints=ANTHROPIC_ENDPOINTS)


def _provider_key(reader: TableReader, where: str, value: str) -> Secret:
    """The key as it will be sent: surrounding whitespace (a file's final newline) dropped, and no
    control character left that would make every request to this provider fail. Never shown."""
    key = value.strip()
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise reader.fail(where, "the key in this variable contains a control character (a newline?)")
    return Secret(key)


def _replace(provider: ProviderConfig, **changes: Any) -> ProviderConfig:
    values = {f.name: getattr(provider, f.name) for f in fields(provider)}
    values.update(changes)
    return ProviderConfig(**values)


def _models(reader: TableReader, raw: Any, slugs: set[str]) -> tuple[ModelConfig, ...]:
    if not isinstance(raw, list):
        raise reader.fail("models", "expected an array of tables ([[models]])")
    out = []
    for i, item in enumerate(raw):
        where = f"models[{i}]"
        if not isinstance(item, dict):
            raise reader.fail(where, "expected a table")
        offers_raw = item.get("offers", [])
        if not isinstance(offers_raw, list):
            raise reader.fail(f"{where}.offers", "expected an array of inline tables")
        scalars = {k: v for k, v in item.items() if k != "offers"}
        model = reader.table(scalars, ModelConfig, where, ("offers",))
        if not model.model_id:
            raise reader.fail(f"{where}.model_id", "must not be empty")
        offers = []
        for j, raw_offer in enumerate(offers_raw):
            owhere = f"{where}.offers[{j}]"
            if not isinstance(raw_offer, dict):
                raise reader.fail(owhere, "expected an inline table")
            offer = reader.table(raw_offer, StaticOffer, owhere)
            if offer.provider not in slugs:
                raise reader.fail(f"{owhere}.provider", f"names undeclared provider {offer.provider!r}")
            _limits(reader, offer, owhere)
            _policies(reader, offer, owhere)
            offers.append(offer)
        fallbacks = tuple(m for m in model.fallbacks if m != model.model_id)
        check_share(reader, f"{where}.hedge_budget", model.hedge_budget)
        out.append(
            ModelConfig(
                model_id=model.model_id,
                offers=tuple(offers),
                fallbacks=fallbacks,
                hedge=model.hedge,
                hedge_budget=model.hedge_budget,
            )
        )
    return tuple(out)


def _limits(reader: TableReader, offer: StaticOffer, where: str) -> None:
    for key in ("context_length", "max_completion_tokens"):
        value = getattr(offer, key)
        if value is not None and value <= 0:
            raise reader.fail(f"{where}.{key}", f"must be greater than 0, got {value}")


def _aliases(reader: TableReader, raw: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict):
        raise reader.fail("aliases", "expected a table of provider id = canonical id")
    for key, value in raw.items():
        if not isinstance(value, str) or not value:
            raise reader.fail(f"aliases.{key}", "expected a non-empty string (the canonical model id)")
    return tuple(sorted(raw.items()))


def _client_keys(reader: TableReader, raw: Any, env: Mapping[str, str]) -> tuple[ClientKey, ...]:
    """`FAILOVER_API_KEYS` (`proxy.client_keys.split_entries`), then each `[[keys]]` table; every name
    used once and every key given once (a key under two names could not say who made a request)."""
    if not isinstance(raw, list):
        raise reader.fail("keys", "expected an array of tables ([[keys]])")
    entries = split_entries(env.get("FAILOVER_API_KEYS", ""))
    keys = [(f"FAILOVER_API_KEYS entry {name!r}", ClientKey(name, Secret(key))) for name, key in entries]
    keys += [(f"keys[{i}]", _key_table(reader, f"keys[{i}]", item, env)) for i, item in enumerate(raw)]
    names: dict[str, str] = {}
    values: dict[Secret, str] = {}
    for where, key in keys:
        if key.name in names:
            raise reader.fail(where, f"duplicate key name {key.name!r} (also in {names[key.name]})")
        if key.key in values:
            raise reader.fail(where, f"key {key.name!r} is the same key as {values[key.key]!r}: give each key once")
        names[key.name], values[key.key] = where, key.name
    return tuple(key for _, key in keys)


def _key_table(reader: TableReader, where: str, item: Any, env: Mapping[str, str]) -> ClientKey:
    """One `[[keys]]` table: `name`, `key_env` (set and non-empty), optional budget."""
    if not isinstance(item, dict):
        raise reader.fail(where, "expected a table")
    for key in item:
        if key not in KEY_TABLE_KEYS:
            raise reader.fail(f"{where}.{key}", f"unknown key (known: {', '.join(KEY_TABLE_KEYS)})")
    for key in ("name", "key_env"):
        if not isinstance(item.get(key), str) or not item[key]:
            raise reader.fail(f"{where}.{key}", "missing, or not a non-empty string")
    name, key_env = item["name"], item["key_env"]
    if not is_key_name(name):
        raise reader.fail(f"{where}.name", f"{name!r} is not a key name (letters, digits, . _ -; at most 64)")
    value = env.get(key_env, "").strip()
    if not value:
        raise reader.fail(f"{where}.key_env", f"{key_env} is not set or empty: key {name!r} would open nothing")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):  # a header could not carry it
        raise reader.fail(f"{where}.key_env", f"the key of {name!r} in {key_env} has a space or control character")
    budget, period = item.get("budget_usd"), item.get("budget_period")
    if period is not None and budget is None:
        raise reader.fail(f"{where}.budget_period", f"key {name!r} has a budget_period but no budget_usd")
    reader.choice(f"{where}.budget_period", period, BUDGET_PERIODS)
    usd = None if budget is None else _budget(reader, f"{where}.budget_usd", budget, name)
    return ClientKey(name, Secret(value), key_env, usd, period or "month")


def _budget(reader: TableReader, where: str, value: Any, name: str) -> Decimal:
    """USD as an exact decimal (a TOML number, or a string such as "12.50"), greater than 0."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise reader.fail(where, f"key {name!r}: expected a number of USD, got {type(value).__name__}")
    try:
        usd = Decimal(str(value).strip())
    except InvalidOperation:
        raise reader.fail(where, f"key {name!r}: not a number of USD: {value!r}") from None
    if not usd.is_finite() or usd <= 0:
        raise reader.fail(where, f"key {name!r}: must be greater than 0, got {value!r}")
    return usd


def _env_secret(env: Mapping[str, str], name: str) -> Secret | None:
    value = env.get(name, "").strip()
    return Secret(value) if value else None


def _env_url(env: Mapping[str, str], name: str) -> Secret | None:
    """A connection URL from the environment, its shape checked now (`check_url`); never shown."""
    secret = _env_secret(env, name)
    if secret is not None:
        check_url(name, secret.reveal())
    return secret


def config_from_mapping(data: Mapping[str, Any], source: str, env: Mapping[str, str]) -> Config:
    reader = TableReader(source)
    allowed = {"proxy", "health", "providers", "models", "aliases", "keys", "usage"}
    for key in data:
        if key not in allowed:
            raise reader.fail(key, f"unknown key (known: {', '.join(sorted(allowed))})")
    for section in ("proxy", "health", "usage"):
        if section in data and not isinstance(data[section], dict):
            raise reader.fail(section, "expected a table")
    proxy = reader.table(data.get("proxy", {}), ProxySettings, "proxy")
    health = reader.table(data.get("health", {}), HealthSettings, "health")
    check_positive(reader, proxy, "proxy")
    check_positive(reader, health, "health")
    usage = reader.table(data.get("usage", {}), UsageSettings, "usage")
    check_positive(reader, usage, "usage")
    check_share(reader, "proxy.hedge_budget", proxy.hedge_budget)
    reader.choice("proxy.answer_model", proxy.answer_model, ANSWER_MODELS)
    providers = _providers(reader, data.get("providers", []), env)
    models = _models(reader, data.get("models", []), {p.slug for p in providers})
    keys = _client_keys(reader, data.get("keys", []), env)
    return Config(
        source=source,
        proxy=proxy,
        health=health,
        providers=providers,
        models=models,
        aliases=_aliases(reader, data.get("aliases", {})),
        database_url=_env_url(env, "DATABASE_URL"),
        redis_url=_env_url(env, "REDIS_URL"),
        client_keys=keys,
        admin_token=_env_secret(env, "FAILOVER_ADMIN_TOKEN"),
        data_dir=env.get("FAILOVER_DATA_DIR", ".failover"),
        redis_prefix=env.get("FAILOVER_REDIS_PREFIX", "gatewayz"),
        usage=usage,
    )


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config; `path` defaults to $FAILOVER_CONFIG, then `failover.toml`."""
    env = os.environ if env is None else env
    source = Path(path or env.get("FAILOVER_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{source}: config file not found (set FAILOVER_CONFIG or pass --config; "
            "see the README's Configuration reference)"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    return config_from_mapping(data, str(source), env)


def command_config(args: argparse.Namespace, *, require_file: bool = False) -> Config:
    """The config named by `--config` / $FAILOVER_CONFIG / `failover.toml`, else (if allowed) defaults."""
    path = getattr(args, "config", None)
    named = path or os.environ.get("FAILOVER_CONFIG")
    if named or require_file or Path(DEFAULT_CONFIG_PATH).exists():
        return load_config(path)
    return config_from_mapping({}, "(defaults: no config file)", os.environ)
