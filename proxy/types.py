"""The product's shared vocabulary: plain, frozen data passed between the pure core and the edges.

An *offer* is one provider's way of serving one canonical model. A *ranking* is the ordered list of
offers the attempt loop walks. An *attempt* is one try at one offer, with how it ended.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple


class Health(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"

    @property
    def tier(self) -> int:
        """Ranking tier: healthy first, degraded and unknown next, unhealthy last."""
        return _TIERS[self]

    @property
    def gauge(self) -> int:
        """The value of `gatewayz_offer_state`: 0 healthy, 1 degraded, 2 unhealthy, 3 unknown."""
        return _GAUGE[self]


_TIERS = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.UNKNOWN: 1, Health.UNHEALTHY: 2}
_GAUGE = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.UNHEALTHY: 2, Health.UNKNOWN: 3}


class Strategy(StrEnum):
    BALANCED = "balanced"
    PRICE = "price"
    LATENCY = "latency"


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


ENDPOINTS = ("chat", "completions", "embeddings", "responses", "moderations", "images", "audio")
"""The endpoint kinds an offer may serve; an OpenAI-compatible provider promises all of them."""
ALL_ENDPOINTS = frozenset(ENDPOINTS)
APIS = ("openai", "anthropic")
"""The APIs a provider may speak (`proxy.provider_api`): OpenAI-compatible (the default), or
Anthropic's Messages API, whose offers serve only `chat` (translated) and `/v1/messages` (natively)."""
QUANTIZATIONS = ("int4", "int8", "fp4", "fp6", "fp8", "fp16", "bf16", "fp32", "unknown")  # OpenRouter's names

OfferKey = tuple[str, str]
"""(provider slug, provider model id): how runtime state names an offer, stable across refreshes."""


class Prices(NamedTuple):
    """An offer's exact prices in USD: per prompt token, cached prompt token, completion token, and
    per request (None: not known). Read by `proxy.billing.cost`."""

    prompt: Decimal | None
    cached_prompt: Decimal | None
    completion: Decimal | None
    request: Decimal | None

    @property
    def priced(self) -> bool:
        """Is any price known? (An offer with none is unpriced: `proxy.billing.cost`.)"""
        return self != UNPRICED


UNPRICED = Prices(None, None, None, None)


def _exact(price: float | None) -> Decimal | None:
    """The decimal a price was written as: `repr` is the shortest text that reads back as the same
    float, exact for every price of up to 15 significant digits (the database keeps NUMERIC)."""
    return None if price is None else Decimal(repr(price))


@dataclass(frozen=True, slots=True)
class Offer:
    """One provider's offer of one canonical model, as the catalog knows it."""

    model_id: str
    provider_slug: str
    provider_model_id: str
    base_url: str
    api_key_env: str
    priority: int = 0
    health: Health = Health.UNKNOWN
    provider_health: Health = Health.UNKNOWN
    response_time_ms: float | None = None
    pricing_prompt: float | None = None
    pricing_completion: float | None = None
    supports_streaming: bool = True
    offer_id: int | None = None
    endpoints: frozenset[str] = ALL_ENDPOINTS  # the endpoint kinds (`ENDPOINTS`) this offer serves
    # What the offer can do (SPEC section 7); None = unknown, never guessed.
    context_length: int | None = None  # tokens of prompt and completion together
    max_completion_tokens: int | None = None
    supported_parameters: frozenset[str] | None = None  # the OpenAI request fields it honours
    input_modalities: frozenset[str] | None = None  # "text", "image", "audio", "file", ...
    pricing_request: float | None = None  # USD per request
    pricing_cached_prompt: float | None = None  # USD per cached prompt token (a cache read); None: the prompt price
    # Data policies, only as the config declares them for the provider or offer.
    data_collection: str | None = None  # "allow" (the provider may keep or train on prompts) or "deny"
    zdr: bool | None = None  # zero data retention
    quantization: str | None = None  # "fp8", "bf16", ... (OpenRouter's names)
    api: str = "openai"  # the API its provider speaks (`APIS`): how a request is spoken to it
    # (provider slug, provider model id), made once: the request path asks for it a dozen times a request
    key: OfferKey = field(init=False, repr=False, compare=False)
    # its prices as exact decimals, made once (every served request is priced with them)
    prices: Prices = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.provider_slug, self.provider_model_id))
        prices = Prices(
            _exact(self.pricing_prompt),
            _exact(self.pricing_cached_prompt),
            _exact(self.pricing_completion),
            _exact(self.pricing_request),
        )
        object.__setattr__(self, "prices", prices)

    @property
    def effective_health(self) -> Health:
        """The worse of the offer's own health and its provider's roll-up (unknown counts as neither)."""
        if Health.UNHEALTHY in (self.health, self.provider_health):
            return Health.UNHEALTHY
        if self.health is Health.UNKNOWN:
            return self.provider_health if self.provider_health is Health.DEGRADED else Health.UNKNOWN
        if Health.DEGRADED in (self.health, self.provider_health):
            return Health.DEGRADED
        return self.health


@dataclass(frozen=True, slots=True)
class Preferences:
    """What a request asked about provider choice (header and OpenRouter-style `provider` field)."""

    order: tuple[str, ...] = ()
    only: frozenset[str] | None = None
    ignore: frozenset[str] = frozenset()
    allow_fallbacks: bool = True
    sort: Strategy | None = None
    # OpenRouter's filters (proxy.failover.fit): prices in USD per million tokens (request: per request)
    require_parameters: bool = False
    max_price: MaxPrice | None = None
    data_collection: str | None = None  # "deny": only offers declared not to collect
    zdr: bool | None = None  # True: only offers declared zero data retention
    quantizations: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class MaxPrice:
    """OpenRouter's `provider.max_price`: prompt and completion in USD per million tokens, request in
    USD per request; None = no ceiling on that one."""

    prompt: float | None = None
    completion: float | None = None
    request: float | None = None


class RuntimeView(NamedTuple):
    """What this instance knows about an offer beyond the catalog, at one instant (a named tuple:
    one is made per ranked offer per request, and a tuple is the cheapest immutable record)."""

    cooldown_until: float = 0.0  # monotonic seconds; a provider said "not before then"
    circuit: CircuitState = CircuitState.CLOSED
    latency_ms: float | None = None  # passive EWMA of time to first byte
    passive_health: Health = Health.UNKNOWN
    slow_until: float = 0.0  # wall clock seconds; after a first-output timeout it ranks behind its peers
    trial_due: bool = False  # ranked down by this instance (or half-open), and its next trial request is due


@dataclass(frozen=True, slots=True)
class Ranking:
    """The offers to try, best first, and those left out because they are cooling down."""

    offers: tuple[Offer, ...]
    cooling: tuple[Offer, ...] = ()
    retry_after_s: float | None = None  # when every offer is cooling: the soonest one is usable again


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at one offer, for the answer's `attempts` list, metrics and logs."""

    provider: str
    provider_model_id: str
    outcome: str  # "ok", an HTTP status as text ("503"), or an error class name ("connect_error")
    elapsed_ms: float
    retryable: bool = True
    detail: str = field(default="", compare=False)
    model: str = ""  # the canonical model of the offer tried, when a request tried several models
    hedge: bool = False  # started alongside the attempt before it (a hedged request)

    def as_json(self, model: str = "") -> dict[str, object]:
        """The entry of a 503's `attempts` list; `model` names the model when the attempt does not."""
        out: dict[str, object] = {
            "model": self.model or model,
            "provider": self.provider,
            "provider_model_id": self.provider_model_id,
            "status": self.outcome,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }
        if self.hedge:
            out["hedge"] = True
        return out


@dataclass(frozen=True, slots=True)
class StateEvent:
    """A change other instances should apply: `kind` is `cooldown` or `circuit_open`.
    `provider_model_id` is empty for a whole-provider circuit."""

    kind: str
    provider: str
    provider_model_id: str
    until: float


@dataclass(slots=True)
class PassiveCounts:
    """Counts since the last flush, for one offer."""

    successes: int = 0
    errors: int = 0
    latency_ms_total: float = 0.0
    last_status: str = ""
    last_error: str = ""
    trailing_successes: int = 0  # the run of successes these counts end with
    trailing_errors: int = 0  # the run of errors these counts end with (one of the two is 0)


NO_VIEW = RuntimeView()
"""What is known of an offer this instance never tried: nothing."""
NO_PREFERENCES = Preferences()
"""A request that states no provider preferences."""


# ASGI, as far as the request path needs it (like starlette.types).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
