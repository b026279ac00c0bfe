"""Provider model listings: `GET {base_url}/models`, in the `openai` or the `openrouter` format.

- `openai`: `{"data": [{"id": "gpt-4", ...}, ...]}` (a bare list of such objects is accepted too);
  no prices. An entry's `type` (Together: `chat`, `language`, `code`, `image`, `embedding`,
  `moderation`, `audio`, `transcribe`, `rerank`) says which endpoints it serves.
- `openrouter`: the same, each entry with `pricing` (USD per token, as strings: `"0.00003"`) and
  `context_length`. A negative price (OpenRouter's `"-1"` for "varies") is stored as unknown.
  `architecture.output_modalities` (or the `modality` "text->text") says which endpoints it serves.

Where a listing says nothing about endpoints, `endpoints` is None: every endpoint the provider serves.

The parse functions are pure and raise `ListingError` naming the entry and field that is wrong.
`fetch_listing` sends the provider's key only to that provider (`Authorization: Bearer`, no
redirects followed) and never puts it in a message; every failure becomes `ListingError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
import orjson

from proxy.config import ProviderConfig
from proxy.errors import ListingError
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
    endpoints: tuple[str, ...] | None = None  # the endpoint kinds it serves, when the listing says


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


def parse_openai_listing(payload: object, source: str = "listing") -> list[ListedModel]:
    """The ids of an OpenAI-format listing."""
    return [ListedModel(entry["id"].strip(), endpoints=type_endpoints(entry)) for entry in _entries(payload, source)]


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


def _openrouter_entry(entry: dict[str, Any], where: str) -> ListedModel:
    pricing = entry.get("pricing") or {}
    if not isinstance(pricing, dict):
        raise ListingError(f"{where}.pricing: expected an object")
    return ListedModel(
        provider_model_id=entry["id"].strip(),
        pricing_prompt=_price(pricing.get("prompt"), f"{where}.pricing.prompt"),
        pricing_completion=_price(pricing.get("completion"), f"{where}.pricing.completion"),
        pricing_request=_price(pricing.get("request"), f"{where}.pricing.request"),
        context_length=_context_length(entry.get("context_length"), f"{where}.context_length"),
        endpoints=modality_endpoints(entry) or type_endpoints(entry),
    )


def parse_openrouter_listing(payload: object, source: str = "listing") -> list[ListedModel]:
    """The ids, per-token prices and context lengths of an OpenRouter-format listing."""
    entries = _entries(payload, source)
    return [_openrouter_entry(entry, f"{source}: data[{i}]") for i, entry in enumerate(entries)]


def parse_listing(listing_format: str, payload: object, source: str = "listing") -> list[ListedModel]:
    """Parse a decoded listing in the provider's configured format (`openai` or `openrouter`)."""
    if listing_format == "openrouter":
        return parse_openrouter_listing(payload, source)
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
    url = f"{provider.base_url}/models"
    source = f"{provider.name} listing {url}"
    headers = {"Accept": "application/json"}
    if provider.api_key:
        headers["Authorization"] = f"Bearer {provider.api_key.reveal()}"
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
    return parse_listing(provider.listing, payload, source)
