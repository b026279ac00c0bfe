"""Provider model listings: `GET {base_url}/models`, in the `openai`, `openrouter` or `together` format.

- `openai`: `{"data": [{"id": "gpt-4", ...}, ...]}` (a bare list of such objects is accepted too);
  no prices. Where an entry has them, Groq's `context_window` and `max_completion_tokens` and
  vLLM's `max_model_len` are read (context length and completion limit).
- `openrouter`: the same, each entry with `pricing` (USD per token, as strings: `"0.00003"`),
  `context_length`, `top_provider` (`context_length`, which wins over the entry's own, and
  `max_completion_tokens`), `supported_parameters` (OpenAI request fields) and
  `architecture.input_modalities`. A negative price (OpenRouter's `"-1"` for "varies") is unknown.
- `together`: Together's `GET /v1/models`, a bare JSON array; each entry with `context_length` and
  `pricing` `{"input", "output"}` in USD per million tokens.

A provider's `pricing_unit` (`token`, `1k`, `1m`) says the unit of a listing's `pricing` object when it
is not the format's own; prices are always returned per token. What a listing does not say stays
unknown (None), never guessed.

An entry's `type` (Together's: `chat`, `language`, `code`, `image`, `embedding`, `moderation`,
`audio`, `transcribe`, `rerank`; in the `together` or the `openai` format) and an OpenRouter entry's
`architecture.output_modalities` (or its `modality`, "text->text") say which endpoints it serves.
Where a listing says nothing about endpoints, `endpoints` is None: every endpoint the provider serves.

The parse functions are pure and raise `ListingError` naming the entry and field that is wrong.
`fetch_listing` sends the provider's key only to that provider (signed as its API takes it,
`proxy.provider_api`; no redirects followed) and never puts it in a message; every failure becomes
`ListingError`. An Anthropic-speaking provider's `GET /models` (`{"data": [{"id": ...}]}`, the
`openai` format) is asked for 1,000 entries a page, its largest.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
import orjson

from proxy.config import ProviderConfig
from proxy.errors import ListingError
from proxy.provider_api import ANTHROPIC, sign
from proxy.upstream.session import provider_session

DEFAULT_TIMEOUT_S = 30.0
MAX_CONTEXT_LENGTH = 2**31 - 1  # the column is an INTEGER; anything larger is not a real length


@dataclass(frozen=True, slots=True)
class ListedModel:
    """One entry of a listing: a provider model id and what the listing says about it."""

    provider_model_id: str
    pricing_prompt: Decimal | None = None  # USD per token
    pricing_completion: Decimal | None = None  # USD per token
    pricing_request: Decimal | None = None  # USD per request
    context_length: int | None = None
    max_completion_tokens: int | None = None
    supported_parameters: tuple[str, ...] | None = None  # as listed, sorted
    input_modalities: tuple[str, ...] | None = None
    endpoints: tuple[str, ...] | None = None  # the endpoint kinds it serves, when the listing says
    pricing_cached_prompt: Decimal | None = None  # USD per cached prompt token (OpenRouter's `input_cache_read`)


GENERATES_TEXT = ("chat", "completions", "responses")
TYPE_ENDPOINTS: dict[str, tuple[str, ...]] = {
    "chat": GENERATES_TEXT,
    "language": GENERATES_TEXT,
    "code": GENERATES_TEXT,
    "image": ("images",),
    "embedding": ("embeddings",),
    "moderation": ("moderations",),
    "audio": ("audio",),
    "transcribe": ("audio",),
    "rerank": (),
}
MODALITY_ENDPOINTS = {"text": GENERATES_TEXT, "image": ("images",), "audio": ("audio",)}


def type_endpoints(entry: dict[str, Any]) -> tuple[str, ...] | None:
    """The endpoints of a listing entry with a `type` (Together's); None for an unknown or no type."""
    kind = entry.get("type")
    return TYPE_ENDPOINTS.get(kind.lower()) if isinstance(kind, str) else None


def modality_endpoints(entry: dict[str, Any]) -> tuple[str, ...] | None:
    """The endpoints of an OpenRouter entry, from what its architecture outputs; None when unsaid."""
    architecture = entry.get("architecture")
    if not isinstance(architecture, dict):
        return None
    outputs = architecture.get("output_modalities")
    if not isinstance(outputs, list):
        modality = architecture.get("modality")
        if not isinstance(modality, str) or "->" not in modality:
            return None
        outputs = modality.split("->", 1)[1].split("+")
    found = [kind for output in outputs if isinstance(output, str) for kind in MODALITY_ENDPOINTS.get(output, ())]
    return tuple(dict.fromkeys(found)) if found else None


def _entries(payload: object, source: str) -> list[dict[str, Any]]:
    data = payload.get("data") if isinstance(payload, dict) else payload
    if not isinstance(data, list):
        raise ListingError(f"{source}: expected an object with a \"data\" list of models")
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise ListingError(f"{source}: data[{i}]: expected an object, got {type(entry).__name__}")
        if not isinstance(entry.get("id"), str) or not entry["id"].strip():
            raise ListingError(f"{source}: data[{i}].id: expected a non-empty string")
    return data


UNITS = {"token": Decimal(1), "1k": Decimal(1000), "1m": Decimal(1_000_000)}


def _extra_length(value: object) -> int | None:
    """A length an OpenAI-format listing may carry beyond the format (Groq, vLLM): unknown when odd."""
    try:
        return _context_length(value, "")
    except ListingError:
        return None


def _openai_entry(entry: dict[str, Any]) -> ListedModel:
    return ListedModel(
        provider_model_id=entry["id"].strip(),
        context_length=_extra_length(entry.get("context_window", entry.get("max_model_len"))),
        max_completion_tokens=_extra_length(entry.get("max_completion_tokens")),
        endpoints=type_endpoints(entry),
    )


def parse_openai_listing(payload: object, source: str = "listing") -> list[ListedModel]:
    """The ids of an OpenAI-format listing, the limits Groq's and vLLM's entries carry, and the
    endpoints of entries with a `type`."""
    return [_openai_entry(entry) for entry in _entries(payload, source)]


def _price(value: object, where: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ListingError(f"{where}: expected a price as a string or number, got {type(value).__name__}")
    try:
        price = Decimal(str(value).strip())
    except InvalidOperation:
        raise ListingError(f"{where}: not a price: {value!r}") from None
    if not price.is_finite():
        raise ListingError(f"{where}: not a price: {value!r}")
    return price if price >= 0 else None


def _context_length(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ListingError(f"{where}: expected an integer, got {value!r}")
    return value if 0 < value <= MAX_CONTEXT_LENGTH else None


def _object(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ListingError(f"{where}: expected an object")
    return value


def _words(value: object, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ListingError(f"{where}: expected a list of strings")
    return tuple(sorted({v.strip() for v in value if v.strip()}))


def _per_token(value: object, where: str, divisor: Decimal) -> Decimal | None:
    price = _price(value, where)
    return None if price is None else price / divisor


def _openrouter_entry(entry: dict[str, Any], where: str, divisor: Decimal) -> ListedModel:
    pricing = _object(entry.get("pricing"), f"{where}.pricing")
    top = _object(entry.get("top_provider"), f"{where}.top_provider")
    architecture = _object(entry.get("architecture"), f"{where}.architecture")
    own_context = _context_length(entry.get("context_length"), f"{where}.context_length")
    top_context = _context_length(top.get("context_length"), f"{where}.top_provider.context_length")
    return ListedModel(
        provider_model_id=entry["id"].strip(),
        pricing_prompt=_per_token(pricing.get("prompt"), f"{where}.pricing.prompt", divisor),
        pricing_completion=_per_token(pricing.get("completion"), f"{where}.pricing.completion", divisor),
        pricing_request=_price(pricing.get("request"), f"{where}.pricing.request"),
        pricing_cached_prompt=_per_token(pricing.get("input_cache_read"), f"{where}.pricing.input_cache_read", divisor),
        context_length=top_context if top_context is not None else own_context,
        max_completion_tokens=_context_length(
            top.get("max_completion_tokens"), f"{where}.top_provider.max_completion_tokens"
        ),
        supported_parameters=_words(entry.get("supported_parameters"), f"{where}.supported_parameters"),
        input_modalities=_words(architecture.get("input_modalities"), f"{where}.architecture.input_modalities"),
        endpoints=modality_endpoints(entry) or type_endpoints(entry),
    )


def parse_openrouter_listing(
    payload: object, source: str = "listing", pricing_unit: str | None = None
) -> list[ListedModel]:
    """The ids, per-token prices, context lengths and capabilities of an OpenRouter-format listing."""
    divisor = UNITS[pricing_unit or "token"]
    entries = _entries(payload, source)
    return [_openrouter_entry(entry, f"{source}: data[{i}]", divisor) for i, entry in enumerate(entries)]


def _together_entry(entry: dict[str, Any], where: str, divisor: Decimal) -> ListedModel:
    pricing = _object(entry.get("pricing"), f"{where}.pricing")
    return ListedModel(
        provider_model_id=entry["id"].strip(),
        pricing_prompt=_per_token(pricing.get("input"), f"{where}.pricing.input", divisor),
        pricing_completion=_per_token(pricing.get("output"), f"{where}.pricing.output", divisor),
        context_length=_context_length(entry.get("context_length"), f"{where}.context_length"),
        endpoints=type_endpoints(entry),
    )


def parse_together_listing(
    payload: object, source: str = "listing", pricing_unit: str | None = None
) -> list[ListedModel]:
    """Together's bare array: ids, context lengths, and prices per million tokens made per token."""
    divisor = UNITS[pricing_unit or "1m"]
    entries = _entries(payload, source)
    return [_together_entry(entry, f"{source}: [{i}]", divisor) for i, entry in enumerate(entries)]


def parse_listing(
    listing_format: str, payload: object, source: str = "listing", pricing_unit: str | None = None
) -> list[ListedModel]:
    """Parse a decoded listing in the provider's configured format (`openai`, `openrouter`, `together`)."""
    if listing_format == "openrouter":
        return parse_openrouter_listing(payload, source, pricing_unit)
    if listing_format == "together":
        return parse_together_listing(payload, source, pricing_unit)
    if listing_format == "openai":
        return parse_openai_listing(payload, source)
    raise ListingError(f"{source}: no listing format {listing_format!r}")


def _status_error(provider: ProviderConfig, source: str, status: int) -> ListingError:
    hint = ""
    if status in (401, 403) and provider.api_key_env:
        hint = f" (is {provider.api_key_env} set to a valid key?)"
    return ListingError(f"{source}: answered HTTP {status}{hint}")


async def fetch_listing(
    provider: ProviderConfig, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[ListedModel]:
    """GET and parse the provider's listing; `ListingError` when it is down, refused or malformed."""
    url = f"{provider.base_url}/models" + ("?limit=1000" if provider.api == ANTHROPIC else "")
    source = f"{provider.name} listing {url}"
    headers = {"Accept": "application/json"}
    sign(headers, provider.api, provider.api_key)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            provider_session(timeout) as session,
            session.get(url, headers=headers, allow_redirects=False) as response,
        ):
            if response.status != 200:
                raise _status_error(provider, source, response.status)
            body = await response.read()
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise ListingError(f"{source}: cannot fetch: {type(exc).__name__} {exc}".rstrip()) from exc
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ListingError(f"{source}: not valid JSON ({exc})") from exc
    return parse_listing(provider.listing, payload, source, provider.pricing_unit)
