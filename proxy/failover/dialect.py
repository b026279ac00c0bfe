"""Speaking to an offer of another API: which offers a request can go to, and how it is translated.

An endpoint speaks its client's API (`Endpoint.api`: `openai`, or `anthropic` for `/v1/messages`);
an offer speaks its provider's (`Offer.api`). An offer of the endpoint's own API gets the request
as always (its `model` rewritten); an offer of another API gets it through the endpoint's `Dialect`
for that API, or not at all when there is none (count_tokens has none) or when the request uses
something the translation cannot carry (`Dialect.refuses`).

The per-offer choice is made in the attempt path (`proxy.failover.attempts._try_offer`) from
`Endpoint.dialect_for(offer)`: the request is encoded for the offer (`Dialect.encode_for`), sent to
`Dialect.upstream`, judged by the offer's API (`output`, `check`), and a whole answer is translated
back before it is served (`Dialect.answer`); a stream is translated as the relay sends it
(`Dialect.stream`, watched in the offer's API by `Dialect.watch`); a refusal passed through gets
the client's envelope (`Dialect.refusal`). The translations themselves are `proxy.dialects`.

- `MESSAGES_VIA_CHAT`: a Messages request to an OpenAI-speaking offer.
- `CHAT_VIA_MESSAGES`: a Chat Completions request to an Anthropic-speaking offer.
- `speaking_offers(...)`: the offers a request can be spoken to (`NoOfferFits` when none can).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.dialects import chat_request, messages_request
from proxy.dialects.answers import chat_answer, messages_answer
from proxy.dialects.anthropic_verdict import MessagesStreamWatch, is_message, messages_output
from proxy.dialects.chat_stream import ChatFromMessages
from proxy.dialects.envelopes import to_anthropic, to_openai
from proxy.dialects.messages_stream import MessagesFromChat
from proxy.dialects.relaying import StreamTranslation
from proxy.errors import BadRequest, NoOfferFits
from proxy.failover.judge.verdict import AnswerCheck, OutputPredicate, chat_output, has_choice, stream_event_outcome
from proxy.provider_api import ANTHROPIC_HEADERS
from proxy.types import Offer
from proxy.upstream.sse import RelayWatch, StreamWatch

API_NAMES = {"openai": "OpenAI-compatible", "anthropic": "Anthropic Messages"}
Body = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one endpoint's requests are spoken to offers of one other API."""

    upstream: str  # the path after the offer's base_url
    encode: Callable[[Body, Offer], dict[str, Any]]  # the client's body -> the offer's, for this offer
    refuses: Callable[[Body], str | None]  # what in a client's body the translation cannot carry
    output: OutputPredicate  # the offer's stream before commit (`proxy.failover.judge.verdict`)
    watch: Callable[[], RelayWatch]  # the offer's stream after commit
    check: AnswerCheck  # the offer's 200 JSON body
    answer: Callable[[dict[str, Any], Body], dict[str, Any]]  # the offer's whole answer -> the client's
    stream: Callable[[Body], StreamTranslation]  # the offer's stream -> the client's, event by event
    refusal: Callable[[int, bytes], bytes]  # an error body of the offer's -> the client's envelope
    drops: tuple[str, ...] = ()  # the client's headers that are not for offers of this API
    asks_usage: bool = False  # its streams carry `stream_options.include_usage` (`proxy.failover.usage_ask`)

    def encode_for(self, body: Body, offer: Offer, headers: dict[str, str], *, usage_ask: bool = True) -> bytes:
        """The offer's request body (the headers it must not get are taken out of `headers`); without
        the ask for a stream's usage when not `usage_ask` (the offer refuses it)."""
        for name in self.drops:
            headers.pop(name, None)
        encoded = self.encode(body, offer)
        if not usage_ask:
            encoded.pop("stream_options", None)
        try:
            return orjson.dumps(encoded)
        except orjson.JSONEncodeError:
            raise BadRequest("the request body is nested too deeply to forward") from None

    def answered(self, parsed: dict[str, Any], body: Body) -> tuple[dict[str, Any], bytes]:
        """The client's answer for the offer's judged one: parsed, and as the bytes to send."""
        answer = self.answer(parsed, body)
        return answer, orjson.dumps(answer)


def _include_usage(body: Body) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


MESSAGES_VIA_CHAT = Dialect(
    upstream="/chat/completions",
    encode=lambda body, offer: messages_request.chat_request(body, offer.provider_model_id),
    refuses=messages_request.untranslatable,
    output=chat_output,
    watch=lambda: StreamWatch(stream_event_outcome, 1),
    check=has_choice("message"),
    answer=lambda parsed, body: messages_answer(parsed, messages_request.stop_sequences(body)),
    stream=lambda body: MessagesFromChat(messages_request.stop_sequences(body)),
    refusal=to_anthropic,
    drops=ANTHROPIC_HEADERS,
    asks_usage=True,
)
CHAT_VIA_MESSAGES = Dialect(
    upstream="/messages",
    encode=lambda body, offer: chat_request.messages_request(
        body, offer.provider_model_id, offer.max_completion_tokens
    ),
    refuses=chat_request.untranslatable,
    output=messages_output,
    watch=MessagesStreamWatch,
    check=is_message,
    answer=lambda parsed, body: chat_answer(parsed),
    stream=lambda body: ChatFromMessages(_include_usage(body)),
    refusal=to_openai,
)


def speaking_offers(
    api: str,
    dialects: Mapping[str, Dialect],
    body: Body | None,
    offers: tuple[Offer, ...],
    *,
    model: str,
    route: str,
) -> tuple[Offer, ...]:
    """The offers a request of `api` (its parsed `body`; None for an upload) can be spoken to: those
    of `api`, and those of another API with a dialect that can carry this request. `NoOfferFits`
    naming why, when none can. Costs one pass over `offers` when they all speak `api`."""
    for offer in offers:
        if offer.api != api:
            break
    else:
        return offers
    kept: list[Offer] = []
    refusals: dict[str, str | None] = {}
    for offer in offers:
        if offer.api == api:
            kept.append(offer)
            continue
        dialect = dialects.get(offer.api)
        if offer.api not in refusals:
            refusals[offer.api] = _refusal(dialect, body)
        if refusals[offer.api] is None:
            kept.append(offer)
    if kept:
        return tuple(kept)
    raise NoOfferFits(_no_speaker(api, refusals, model, route))


def _refusal(dialect: Dialect | None, body: Body | None) -> str | None:
    if dialect is None or body is None:
        return ""  # no translation at all
    return dialect.refuses(body)


def _no_speaker(api: str, refusals: Mapping[str, str | None], model: str, route: str) -> str:
    other, reason = next(iter(refusals.items()))
    if not reason:
        return (
            f"{route} is served only by offers that speak the {API_NAMES[api]} API, and no offer of {model} does "
            f"(its offers speak the {API_NAMES[other]} API)"
        )
    return (
        f"the request uses {reason}, which cannot be translated for offers that speak the {API_NAMES[other]} API, "
        f"and no offer of {model} speaks the {API_NAMES[api]} API"
    )
