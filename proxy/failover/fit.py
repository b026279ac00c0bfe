"""Which offers can take a request: what the request needs (from its parsed body and preferences),
and each offer's verdict — fits, unknown, or known not to fit. Pure; applied before ranking.

What a request needs (SPEC section 7, issue 12):
- `tools`, `tool_choice` (or the legacy `functions`, `function_call`): an offer that supports tools;
- `response_format` of type `json_schema`: an offer that supports `structured_outputs`;
- image (`image_url`, `input_image`), audio (`input_audio`) or file (`file`, `input_file`) content
  parts: an offer whose `input_modalities` include `image`, `audio` or `file`;
- `max_tokens` / `max_completion_tokens` / `max_output_tokens`: not above an offer's `max_completion_tokens`;
- the prompt's size estimate (`estimate_prompt_tokens`) not above an offer's `context_length`;
- `provider.require_parameters`: an offer known to honour every parameter the request uses
  (`request_parameters`); unknown `supported_parameters` does not qualify;
- `provider.max_price` (USD per million tokens; `request` per request): an offer with known prices
  at or below each ceiling given; an unknown price does not qualify;
- `provider.data_collection = "deny"`, `provider.zdr = true`, `provider.quantizations`: offers
  whose declared policy matches; an offer without a declaration is unknown (kept, tried later).

An offer known not to fit is not tried. Unknown is never a refusal: such offers are tried after those
known to fit. Every offer is taken to hold `FLOOR_TOKENS` of prompt and of completion, so a request
within that floor orders nothing.

A plain request — none of `FIT_FIELDS`, no content part (no `"type"` in its raw body), no filtering
preference — costs nothing here: `request_needs` returns None without walking the body, and its
prompt is only measured when some offer's known context times `CHARS_PER_TOKEN` is below the body's
size in bytes (a character is at least one byte, so otherwise no offer can be too small).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from proxy.errors import NoOfferFits
from proxy.types import NO_PREFERENCES, MaxPrice, Offer, OfferKey, Preferences
from proxy.upstream.usage import CHARS_PER_TOKEN

FLOOR_TOKENS = 4096  # every chat offer takes this much prompt and completion: no need to know it
PER_MILLION = 1_000_000
# Not "parameters" of a request for `require_parameters` (OpenRouter's reading): the model, the input,
# streaming, and the routing fields this proxy consumes.
# (`system`: the Messages API's, which is its first message)
NOT_PARAMETERS = frozenset(
    {"model", "messages", "prompt", "input", "stream", "stream_options", "provider", "models", "user", "metadata",
     "system"}
)
# Request fields under the name a listing's `supported_parameters` uses (Messages API's names too).
PARAMETER_NAMES = {"max_completion_tokens": "max_tokens", "functions": "tools", "function_call": "tool_choice",
                   "stop_sequences": "stop"}  # fmt: skip
TOOL_FIELDS = ("tools", "tool_choice", "functions", "function_call")
OUTPUT_LIMIT_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
FIT_FIELDS = frozenset((*TOOL_FIELDS, *OUTPUT_LIMIT_FIELDS, "response_format"))
CONTENT_PART = b'"type"'  # every content part (text, image_url, input_audio, file...) has a "type"
PART_MODALITIES = {
    "image_url": "image",
    "input_image": "image",
    "input_audio": "audio",
    "file": "file",
    "input_file": "file",
    "image": "image",  # the Messages API's blocks
    "document": "file",
}


class Verdict(IntEnum):
    FITS = 0
    UNKNOWN = 1
    NO = 2


@dataclass(frozen=True, slots=True)
class Needs:
    """What one request needs of an offer. `special` is False for a plain request: nothing to filter
    on but a prompt, and an output limit, within `FLOOR_TOKENS`."""

    tools: bool = False
    structured_outputs: bool = False
    modalities: frozenset[str] = frozenset()
    max_output: int | None = None
    max_output_field: str = "max_tokens"
    prompt_tokens: int = 0
    parameters: frozenset[str] | None = None  # set only with provider.require_parameters
    max_price: MaxPrice | None = None
    data_collection_deny: bool = False
    zdr: bool = False
    quantizations: frozenset[str] | None = None

    @property
    def special(self) -> bool:
        return (
            self.tools
            or self.structured_outputs
            or bool(self.modalities)
            or (self.max_output is not None and self.max_output > FLOOR_TOKENS)
            or self.prompt_tokens > FLOOR_TOKENS
            or self.parameters is not None
            or self.max_price is not None
            or self.data_collection_deny
            or self.zdr
            or self.quantizations is not None
        )


@dataclass(frozen=True, slots=True)
class Fit:
    """The offers that may be tried, and which of them are of unknown fit (to rank after the rest)."""

    offers: tuple[Offer, ...]
    unknown: frozenset[OfferKey] = frozenset()


# --- what the request needs ------------------------------------------------------------------


def _text_length(content: Any, modalities: set[str]) -> int:
    """Characters of text in a message's `content` (a string or a list of parts); other parts' kinds
    go into `modalities`."""
    if isinstance(content, str):
        return len(content)
    if not isinstance(content, list):
        return 0
    length = 0
    for part in content:
        if isinstance(part, str):
            length += len(part)
        elif isinstance(part, dict):
            kind = part.get("type")
            text = part.get("text")
            if isinstance(text, str):
                length += len(text)
            elif kind in PART_MODALITIES:
                modalities.add(PART_MODALITIES[kind])
    return length


def _prompt_length(body: Mapping[str, Any], modalities: set[str]) -> int:
    messages = body.get("messages")
    length = 0
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                length += _text_length(message.get("content"), modalities)
    for key in ("prompt", "input"):
        value = body.get(key)
        if isinstance(value, str):
            length += len(value)
        elif isinstance(value, list):
            for item in value:
                content = item.get("content") if isinstance(item, dict) else item
                length += _text_length(content, modalities)
    return length


def prompt_characters(body: Mapping[str, Any]) -> int:
    """Characters of the prompt's text (as `estimate_prompt_tokens` counts them)."""
    return _prompt_length(body, set())


def estimate_prompt_tokens(characters: int) -> int:
    """The prompt-size rule: characters of text (message contents, text parts, `prompt`, `input`;
    images and other parts not counted) divided by `CHARS_PER_TOKEN`, rounded up. It undercounts
    code and non-Latin scripts, so an offer it rules out is clearly too small."""
    return -(-characters // CHARS_PER_TOKEN)


def _max_output(body: Mapping[str, Any]) -> tuple[int | None, str]:
    for name in OUTPUT_LIMIT_FIELDS:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value, name
    return None, "max_tokens"


def request_parameters(body: Mapping[str, Any]) -> frozenset[str]:
    """The parameters a request uses, as `require_parameters` reads them: its top-level fields other
    than `NOT_PARAMETERS`, named as listings name them (`max_completion_tokens` is `max_tokens`)."""
    return frozenset(PARAMETER_NAMES.get(k, k) for k in body if k not in NOT_PARAMETERS)


def _structured(body: Mapping[str, Any]) -> bool:
    response_format = body.get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") == "json_schema"


def _filters(prefs: Preferences) -> bool:
    return (
        prefs.require_parameters
        or prefs.max_price is not None
        or prefs.data_collection is not None
        or prefs.zdr is not None
        or prefs.quantizations is not None
    )


def request_needs(body: Mapping[str, Any], prefs: Preferences, raw: bytes | bytearray | None = None) -> Needs | None:
    """What `body` (the parsed request, `provider` and `models` taken out) and its preferences need;
    None for a plain request (see the module docstring) when `raw`, the body as received, is given."""
    plain_prefs = prefs is NO_PREFERENCES or not _filters(prefs)
    if raw is not None and plain_prefs and FIT_FIELDS.isdisjoint(body) and CONTENT_PART not in raw:
        return None
    return measure_needs(body, prefs)


def measure_needs(body: Mapping[str, Any], prefs: Preferences) -> Needs:
    """`request_needs` in full: the body walked for its prompt size and content parts."""
    modalities: set[str] = set()
    characters = _prompt_length(body, modalities)
    max_output, field = _max_output(body)
    return Needs(
        tools=any(body.get(name) is not None for name in TOOL_FIELDS),
        structured_outputs=_structured(body),
        modalities=frozenset(modalities),
        max_output=max_output,
        max_output_field=field,
        prompt_tokens=estimate_prompt_tokens(characters),
        parameters=request_parameters(body) if prefs.require_parameters else None,
        max_price=prefs.max_price,
        data_collection_deny=prefs.data_collection == "deny",
        zdr=prefs.zdr is True,
        quantizations=prefs.quantizations,
    )


# --- each offer's verdict --------------------------------------------------------------------


def _supports(offer: Offer, parameter: str) -> Verdict:
    if offer.supported_parameters is None:
        return Verdict.UNKNOWN
    return Verdict.FITS if parameter in offer.supported_parameters else Verdict.NO


def _at_most(value: int, limit: int | None) -> Verdict:
    if limit is None:
        return Verdict.FITS if value <= FLOOR_TOKENS else Verdict.UNKNOWN
    return Verdict.FITS if value <= limit else Verdict.NO


def _modalities(offer: Offer, needs: Needs) -> Verdict:
    if offer.input_modalities is None:
        return Verdict.UNKNOWN
    return Verdict.FITS if needs.modalities <= offer.input_modalities else Verdict.NO


def _all_parameters(offer: Offer, needs: Needs) -> Verdict:
    assert needs.parameters is not None
    known = offer.supported_parameters
    return Verdict.FITS if known is not None and needs.parameters <= known else Verdict.NO


def _within(price: float | None, ceiling: float | None, scale: float) -> bool:
    return ceiling is None or (price is not None and price * scale <= ceiling + 1e-12)


def _max_price(offer: Offer, needs: Needs) -> Verdict:
    ceiling = needs.max_price
    assert ceiling is not None
    ok = (
        _within(offer.pricing_prompt, ceiling.prompt, PER_MILLION)
        and _within(offer.pricing_completion, ceiling.completion, PER_MILLION)
        and _within(offer.pricing_request, ceiling.request, 1.0)
    )
    return Verdict.FITS if ok else Verdict.NO


def _declared(value: object, wanted: Iterable[object]) -> Verdict:
    if value is None:
        return Verdict.UNKNOWN
    return Verdict.FITS if value in wanted else Verdict.NO


Check = tuple[str, str]  # (what is missing, the request field it comes from)


def _checks(offer: Offer, needs: Needs) -> Iterable[tuple[Check, Verdict]]:
    """Each need of the request with this offer's verdict, in the order refusals are named."""
    yield from _capability_checks(offer, needs)
    yield from _preference_checks(offer, needs)


def _capability_checks(offer: Offer, needs: Needs) -> Iterable[tuple[Check, Verdict]]:
    if needs.tools:
        yield ("tools", "tools"), _supports(offer, "tools")
    if needs.structured_outputs:
        yield ("structured_outputs", "response_format"), _supports(offer, "structured_outputs")
    if needs.modalities:
        yield ("modalities", "messages"), _modalities(offer, needs)
    if needs.max_output is not None:
        yield ("max_output", needs.max_output_field), _at_most(needs.max_output, offer.max_completion_tokens)
    if needs.prompt_tokens:
        yield ("context", "messages"), _at_most(needs.prompt_tokens, offer.context_length)


def _preference_checks(offer: Offer, needs: Needs) -> Iterable[tuple[Check, Verdict]]:
    if needs.parameters is not None:
        yield ("parameters", "provider.require_parameters"), _all_parameters(offer, needs)
    if needs.max_price is not None:
        yield ("max_price", "provider.max_price"), _max_price(offer, needs)
    if needs.data_collection_deny:
        yield ("data_collection", "provider.data_collection"), _declared(offer.data_collection, ("deny",))
    if needs.zdr:
        yield ("zdr", "provider.zdr"), _declared(offer.zdr, (True,))
    if needs.quantizations is not None:
        yield ("quantizations", "provider.quantizations"), _declared(offer.quantization, needs.quantizations)


def offer_verdict(offer: Offer, needs: Needs) -> Verdict:
    """The worst verdict over the request's needs: NO if any is known unmet, else UNKNOWN if any is."""
    worst = Verdict.FITS
    for _, verdict in _checks(offer, needs):
        if verdict is Verdict.NO:
            return verdict
        worst = max(worst, verdict)
    return worst


def _too_small(offers: Sequence[Offer], needs: Needs) -> bool:
    """A plain request: is any offer known to be too small for its prompt or output limit?"""
    for offer in offers:
        if offer.context_length is not None and offer.context_length < needs.prompt_tokens:
            return True
        limit = offer.max_completion_tokens
        if limit is not None and needs.max_output is not None and limit < needs.max_output:
            return True
    return False


def may_be_too_small(offers: Sequence[Offer], size: int) -> bool:
    """Whether a plain request of `size` bytes could be too long for some offer's known context."""
    for offer in offers:  # noqa: SIM110 (a plain loop: no generator object per request)
        if offer.context_length is not None and offer.context_length * CHARS_PER_TOKEN < size:
            return True
    return False


def fit_offers(offers: Sequence[Offer], needs: Needs, model: str) -> Fit:
    """The offers that may take the request, unknown ones marked; `NoOfferFits` naming what was
    missing when none may. `model` is the canonical model, for the message."""
    if not needs.special and not _too_small(offers, needs):
        return Fit(tuple(offers))
    kept: list[Offer] = []
    unknown: set[OfferKey] = set()
    for offer in offers:
        verdict = offer_verdict(offer, needs)
        if verdict is Verdict.NO:
            continue
        kept.append(offer)
        if verdict is Verdict.UNKNOWN and needs.special:
            unknown.add(offer.key)
    if not kept:
        raise refusal(offers, needs, model)
    return Fit(tuple(kept), frozenset(unknown))


# --- what to tell the client -----------------------------------------------------------------


def _largest(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _message(check: Check, offers: Sequence[Offer], needs: Needs, model: str) -> str:
    what, _ = check
    if what == "max_output":
        largest = _largest(o.max_completion_tokens for o in offers)
        return (
            f"{needs.max_output_field} {needs.max_output} is above every offer's limit "
            f"(the largest among {model}'s offers is {largest})"
        )
    if what == "context":
        largest = _largest(o.context_length for o in offers)
        return (
            f"the prompt is about {needs.prompt_tokens} tokens; the largest context among {model}'s offers is {largest}"
        )
    if what == "modalities":
        return f"no offer of {model} takes {' and '.join(sorted(needs.modalities))} input"
    if what == "parameters":
        used = ", ".join(sorted(needs.parameters or ())) or "none"
        return (
            f"no offer of {model} is known to support every parameter of this request ({used}); "
            "provider.require_parameters is true"
        )
    if what == "max_price":
        return f"no offer of {model} within max_price (prices known and at or below it; USD per million tokens)"
    texts = {
        "tools": f"no offer of {model} supports tools",
        "structured_outputs": f"no offer of {model} supports structured outputs (response_format json_schema)",
        "data_collection": f"no offer of {model} is declared not to collect data (provider.data_collection = deny)",
        "zdr": f"no offer of {model} is declared zero data retention (provider.zdr = true)",
        "quantizations": f"no offer of {model} has one of the quantizations {sorted(needs.quantizations or ())}",
    }
    return texts[what]


def refusal(offers: Sequence[Offer], needs: Needs, model: str) -> NoOfferFits:
    """The 4xx when no offer fits: the first need no offer meets, or the needs no single offer meets."""
    met: dict[Check, bool] = {}
    for offer in offers:
        for check, verdict in _checks(offer, needs):
            met[check] = met.get(check, False) or verdict is not Verdict.NO
    for check, ok in met.items():
        if not ok:
            return NoOfferFits(_message(check, offers, needs, model), param=check[1])
    names = ", ".join(check[1] for check in met)
    return NoOfferFits(f"no single offer of {model} meets every need of this request ({names})", param=None)
