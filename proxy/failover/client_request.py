"""Reading a client's request body: parsed once, validated, preferences taken out. Pure.

Raises `BadRequest` with an OpenAI-style message naming the offending field; never anything else.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.errors import BadRequest, UnknownProvider
from proxy.types import NO_PREFERENCES, QUANTIZATIONS, MaxPrice, Preferences, Strategy

SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # \Z, not $: "$" would let a final newline in
SORTS = {"price": Strategy.PRICE, "latency": Strategy.LATENCY, "throughput": Strategy.LATENCY}
MAX_MODEL_LENGTH = 256
MAX_FALLBACK_MODELS = 16


@dataclass(frozen=True, slots=True)
class ClientRequest:
    model: str
    stream: bool
    body: dict[str, Any]  # what is forwarded, less `model` rewriting; `provider` and `models` are gone
    prefs: Preferences
    models: tuple[str, ...] = ()  # OpenRouter's `models`: the models to try after `model`, in order
    raw: bytes | bytearray = b""  # the body as received (for `proxy.failover.fit`'s cheap checks; never forwarded)
    usage_accounting: bool = False  # OpenRouter's `"usage": {"include": true}`: the answer's usage gets its cost

    def encode_for(self, provider_model_id: str, *, usage_ask: bool = False) -> bytes:
        """The body to send to one offer: the client's fields with `model` set to the provider's id,
        and `stream_options.include_usage` set when `usage_ask` (`proxy.failover.usage_ask`)."""
        body = dict(self.body)
        body["model"] = provider_model_id
        if usage_ask:
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        try:
            return orjson.dumps(body)
        except orjson.JSONEncodeError:  # orjson reads 1,023 levels of nesting but writes only 254
            raise BadRequest("the request body is nested too deeply to forward") from None


def parse_request(raw: bytes | bytearray, provider_header: str | None = None) -> ClientRequest:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc.msg}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"the request body must be a JSON object, not {_kind(body)}")
    fallbacks = body.pop("models", None)
    models = () if fallbacks is None else _models(fallbacks)
    model = body.get("model")
    if model is None and models:
        model = models[0]
    if model is None:
        raise BadRequest("you must provide a model parameter", param="model")
    if not isinstance(model, str) or not model.strip() or len(model) > MAX_MODEL_LENGTH:
        raise BadRequest("model must be a non-empty string of at most 256 characters", param="model")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest("stream must be true or false", param="stream")
    prefs = parse_preferences(body.pop("provider", None), provider_header)
    accounting = _usage_accounting(body.pop("usage", None))
    return ClientRequest(
        model=model, stream=stream, body=body, prefs=prefs, models=models, raw=raw, usage_accounting=accounting
    )


def _usage_accounting(field: Any) -> bool:
    """OpenRouter's `usage` request field, `{"include": true}` (https://openrouter.ai/docs/use-cases/usage-accounting):
    the proxy's to answer, never forwarded (OpenAI refuses a field it does not know)."""
    if field is None:
        return False
    include = field.get("include", False) if isinstance(field, dict) else None
    if not isinstance(include, bool):
        raise BadRequest('usage must be an object such as {"include": true}', param="usage")
    return include


def _model_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and len(value) <= MAX_MODEL_LENGTH


def _models(value: Any) -> tuple[str, ...]:
    """OpenRouter's `models` field: model ids (canonical or provider-style) to fall back to."""
    if not isinstance(value, list) or len(value) > MAX_FALLBACK_MODELS or not all(map(_model_name, value)):
        raise BadRequest(
            f"models must be a list of at most {MAX_FALLBACK_MODELS} model ids (non-empty strings)", param="models"
        )
    return tuple(dict.fromkeys(value))


def parse_preferences(field: Any, provider_header: str | None) -> Preferences:
    """Merge the OpenRouter-style `provider` body field and the `x-gatewayz-provider` header.
    The header's provider comes first in the order. `require_parameters`, `max_price`,
    `data_collection`, `zdr` and `quantizations` are read for `proxy.failover.fit`; other OpenRouter
    fields are accepted and ignored, so its clients keep working."""
    if field is None and provider_header is None:
        return NO_PREFERENCES  # the common case, without building an equal object per request
    if field is None:
        field = {}
    if not isinstance(field, dict):
        raise BadRequest("provider must be an object", param="provider")
    order = _slugs(field.get("order"), "provider.order")
    if provider_header is not None:
        header = provider_header.strip()
        if not SLUG.match(header):
            raise BadRequest("x-gatewayz-provider must be a provider slug", param="x-gatewayz-provider")
        order = (header, *(s for s in order if s != header))
    only = field.get("only")
    allow = field.get("allow_fallbacks", True)
    if not isinstance(allow, bool):
        raise BadRequest("provider.allow_fallbacks must be true or false", param="provider.allow_fallbacks")
    sort = field.get("sort")
    if sort is not None and sort not in SORTS:
        raise BadRequest("provider.sort must be one of price, latency, throughput", param="provider.sort")
    return Preferences(
        order=order,
        only=None if only is None else frozenset(_slugs(only, "provider.only")),
        ignore=frozenset(_slugs(field.get("ignore"), "provider.ignore")),
        allow_fallbacks=allow,
        sort=SORTS[sort] if sort is not None else None,
        require_parameters=_flag(field, "require_parameters") is True,
        max_price=_max_price(field.get("max_price")),
        data_collection=_data_collection(field.get("data_collection")),
        zdr=_flag(field, "zdr"),
        quantizations=_quantizations(field.get("quantizations")),
    )


def require_known_providers(prefs: Preferences, header: str | None, known: Collection[str]) -> None:
    """`UnknownProvider` when `x-gatewayz-provider`, `provider.order` or `provider.only` names a provider
    this proxy does not have: such a preference would otherwise be dropped without a word (or leave no
    offer at all), and a typo would look like a routing decision. `provider.ignore` may name any."""
    if header is not None and header.strip() not in known:
        _unknown("x-gatewayz-provider", [header.strip()], known)
    for param, slugs in (("provider.order", prefs.order), ("provider.only", prefs.only or ())):
        unknown = sorted(set(slugs) - set(known))
        if unknown:
            _unknown(param, unknown, known)


def _unknown(param: str, slugs: list[str], known: Collection[str]) -> None:
    names = ", ".join(slugs)
    raise UnknownProvider(
        f"{param} names a provider this proxy does not have: {names} (its providers: {', '.join(sorted(known))})",
        param=param,
    )


def _flag(field: dict[str, Any], key: str) -> bool | None:
    value = field.get(key)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"provider.{key} must be true or false", param=f"provider.{key}")
    return value


def _max_price(value: Any) -> MaxPrice | None:
    """`provider.max_price`: `prompt`, `completion` (USD per million tokens), `request` (USD per
    request); OpenRouter's `image` and others are accepted and not acted on."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest("provider.max_price must be an object", param="provider.max_price")
    ceilings: dict[str, float | None] = {}
    for key in ("prompt", "completion", "request"):
        price = value.get(key)
        if price is not None and (isinstance(price, bool) or not isinstance(price, int | float) or price < 0):
            raise BadRequest(f"provider.max_price.{key} must be a number >= 0", param=f"provider.max_price.{key}")
        ceilings[key] = None if price is None else float(price)
    return MaxPrice(**ceilings)


def _data_collection(value: Any) -> str | None:
    if value is not None and value not in ("allow", "deny"):
        raise BadRequest("provider.data_collection must be allow or deny", param="provider.data_collection")
    return value if value == "deny" else None


def _quantizations(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(v in QUANTIZATIONS for v in value):
        names = ", ".join(QUANTIZATIONS)
        raise BadRequest(f"provider.quantizations must be a list of: {names}", param="provider.quantizations")
    return frozenset(value)


def _slugs(value: Any, param: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > 64:
        raise BadRequest(f"{param} must be a list of provider slugs", param=param)
    for item in value:
        if not isinstance(item, str) or not SLUG.match(item):
            raise BadRequest(f"{param} must be a list of provider slugs", param=param)
    return tuple(dict.fromkeys(value))


def _kind(value: object) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")
