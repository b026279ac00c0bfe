"""Reading a client's request body: parsed once, validated, preferences taken out. Pure.

Raises `BadRequest` with an OpenAI-style message naming the offending field; never anything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.errors import BadRequest
from proxy.types import NO_PREFERENCES, Preferences, Strategy

SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # \Z, not $: "$" would let a final newline in
SORTS = {"price": Strategy.PRICE, "latency": Strategy.LATENCY, "throughput": Strategy.LATENCY}
MAX_MODEL_LENGTH = 256


@dataclass(frozen=True, slots=True)
class ClientRequest:
    model: str
    stream: bool
    body: dict[str, Any]  # what is forwarded, less `model` rewriting; the `provider` field is gone
    prefs: Preferences

    def encode_for(self, provider_model_id: str) -> bytes:
        """The body to send to one offer: the client's fields with `model` set to the provider's id."""
        body = dict(self.body)
        body["model"] = provider_model_id
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
    model = body.get("model")
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
    return ClientRequest(model=model, stream=stream, body=body, prefs=prefs)


def parse_preferences(field: Any, provider_header: str | None) -> Preferences:
    """Merge the OpenRouter-style `provider` body field and the `x-gatewayz-provider` header.
    The header's provider comes first in the order. OpenRouter fields this proxy does not act on
    (`data_collection`, `quantizations`, ...) are accepted and ignored, so its clients keep working."""
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
    )


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
