"""The proxied endpoints, one row each: everything the request path knows about an endpoint.

Each `Endpoint` says which offers serve it (`kind`), how the client's request is read (`form`), how
a provider's answer is judged before it is committed (`answer`, `check`, `events`) and what else
applies to it (`hedged`, `pins`, `pinned`). The handler, the attempt loop, the app's router and the
404 hint all read this one table (`PROXIED`, keyed once by method and route), so adding an endpoint
is adding a row.

- `form`: `json` (parsed once, `model` rewritten per offer), `multipart` (a form upload whose
  `model` field is rewritten per offer, the file kept once) or `none` (the request names a stored
  response in its path; the pin says where it goes).
- `answer`: `json` (a JSON object judged by the verdict and `check`, or server-sent events when
  `stream` is true), `document` (JSON, or the plain text some formats ask for, such as a transcript
  with `response_format: "text"`), `binary` (audio bytes: judged by status and content type,
  streamed through as they come) or `raw` (passed through as the provider said it).
- `events`: how a stream is judged: before commit, which event is the first that carries output
  (`output`, which may raise the attempt's failure); after commit, what watches it (`watch`).
- `pinned`: the request continues a response stored at one provider: it goes to that offer alone,
  and the provider's 404 ("no such response") is its answer, not a reason to fail over.
- `api`: the API its clients speak (`openai`, or `anthropic`: the Messages API); `dialects`: how its
  requests are spoken to offers of another API (`proxy.failover.dialect`); an offer of another API
  without one is never tried. `validate` checks the parsed body beyond `model` and `stream`;
  `usage` reads a whole answer's usage; `measured` is False for an endpoint whose attempts teach
  nothing about an offer's health or speed (count_tokens: free, and some providers lack it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any, Protocol

from proxy.dialects.anthropic_verdict import MessagesStreamWatch, has_input_tokens, is_message, messages_output
from proxy.dialects.messages_request import check_messages
from proxy.dialects.relaying import NativeMessages, StreamTranslation
from proxy.dialects.usage_shapes import answer_usage
from proxy.failover.client_request import ClientRequest, parse_request
from proxy.failover.dialect import CHAT_VIA_MESSAGES, MESSAGES_VIA_CHAT, Dialect, speaking_offers
from proxy.failover.form_request import parse_form
from proxy.failover.judge.verdict import (
    AnswerCheck,
    OutputPredicate,
    chat_output,
    expected_choices,
    has_choice,
    has_data,
    has_results,
    stream_event_outcome,
)
from proxy.provider_api import ANTHROPIC, OPENAI
from proxy.types import Offer, Preferences
from proxy.upstream.client import Body
from proxy.upstream.responses_events import TypedStreamWatch, responses_output, transcript_output
from proxy.upstream.sse import RelayWatch, StreamWatch
from proxy.upstream.usage import Usage, usage_of


class ForwardRequest(Protocol):
    """What the attempt loop needs of a client's request (a JSON body, a multipart form, a pinned call)."""

    @property
    def model(self) -> str: ...
    @property
    def stream(self) -> bool: ...
    @property
    def prefs(self) -> Preferences: ...
    def encode_for(self, provider_model_id: str) -> Body: ...


@dataclass(frozen=True, slots=True)
class Events:
    """How an endpoint's stream is judged: `output` before commit, a `watch(request)` after it."""

    output: OutputPredicate
    watch: Callable[[ForwardRequest], RelayWatch]
    names_response: bool = False  # its first events name the response it creates (Responses API)


def _chat_watch(request: ForwardRequest) -> RelayWatch:
    """Chat-like chunks, `n` choices of them (each must finish for the stream to be complete)."""
    choices = expected_choices(request.body) if isinstance(request, ClientRequest) else 1
    return StreamWatch(stream_event_outcome, choices)


CHAT_EVENTS = Events(chat_output, _chat_watch)
RESPONSES_EVENTS = Events(responses_output, lambda request: TypedStreamWatch(), names_response=True)
TRANSCRIPT_EVENTS = Events(transcript_output, lambda request: TypedStreamWatch(transcript=True))
MESSAGES_EVENTS = Events(messages_output, lambda request: MessagesStreamWatch())
NO_DIALECTS: Mapping[str, Dialect] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Endpoint:
    route: str  # the client's path, or its pattern (`/v1/responses/{response_id}`)
    upstream: str  # the path after the provider's base_url (`{response_id}` filled in per request)
    kind: str  # one of proxy.types.ENDPOINTS: only offers that serve it are tried
    method: str = "POST"
    form: str = "json"
    answer: str = "json"
    check: AnswerCheck | None = None  # a 200 JSON body that fails it carries no answer (`EmptyAnswer`)
    events: Events = CHAT_EVENTS
    hedged: bool = False  # a duplicate costs little and leaves nothing behind (proxy.failover.hedge)
    pins: bool = False  # a response it creates is pinned to its offer, for the chain's follow-ups
    pinned: bool = False  # it continues a stored response: that offer alone, its 404 is the answer
    label: str = ""  # its `route` label in metrics and the access line, when not `route` itself
    api: str = OPENAI  # the API its clients speak
    dialects: Mapping[str, Dialect] = field(default_factory=lambda: NO_DIALECTS)  # to offers of another API
    validate: Callable[[Mapping[str, Any]], None] | None = None  # more checks of a parsed JSON body
    usage: Callable[[Any], Usage | None] = usage_of  # a whole answer's usage, as the record keeps it
    measured: bool = True  # its attempts feed offer health, circuits and learned first-output times
    usage_ask: bool = False  # its streams are asked for usage, its `usage` accounted (`proxy.failover.usage_ask`)

    def parse(
        self, raw: bytes | bytearray, headers: Mapping[bytes, bytes], provider_header: str | None
    ) -> ForwardRequest:
        """The client's request (`BadRequest` when it is not one); `form` is `json` or `multipart`."""
        if self.form == "json":
            request = parse_request(raw, provider_header)
            if self.validate is not None:
                self.validate(request.body)
            return request
        return parse_form(raw, headers.get(b"content-type", b""), provider_header)

    def dialect_for(self, offer: Offer) -> Dialect | None:
        """How a request is spoken to `offer`: None for the endpoint's own API (`speaking` left out
        the offers of other APIs it has no dialect for)."""
        return None if offer.api == self.api else self.dialects.get(offer.api)

    def speaking(self, request: ForwardRequest, offers: tuple[Offer, ...], model: str) -> tuple[Offer, ...]:
        """The offers this request can be spoken to (`proxy.failover.dialect.speaking_offers`)."""
        body = request.body if isinstance(request, ClientRequest) else None
        return speaking_offers(self.api, self.dialects, body, offers, model=model, route=self.route)

    def relay_parts(
        self, request: ForwardRequest, dialect: Dialect | None
    ) -> tuple[RelayWatch, StreamTranslation | None]:
        """What watches a committed stream (in the offer's API) and what turns it into the client's
        (None: relayed as it came, ended as chat streams end)."""
        if dialect is not None:
            body = request.body if isinstance(request, ClientRequest) else {}
            return dialect.watch(), dialect.stream(body)
        return self.events.watch(request), (NativeMessages() if self.api == ANTHROPIC else None)

    def refusal_for(self, offer: Offer | None, status: int, body: bytes) -> bytes:
        """An offer's refusal, passed through in the client's envelope."""
        dialect = None if offer is None else self.dialect_for(offer)
        return body if dialect is None else dialect.refusal(status, body)

    def content_type(self, headers: Mapping[bytes, bytes]) -> str:
        """The content type sent to providers: JSON, or the client's own (a form's boundary)."""
        if self.form == "multipart":
            return headers.get(b"content-type", b"").decode("latin-1")
        return "application/json"

    def final_status(self, status: int) -> bool:
        """A provider status that is this endpoint's answer, passed through and never failed over."""
        return self.pinned and status == 404


def _row(endpoint: Endpoint) -> tuple[tuple[str, str], Endpoint]:
    return (endpoint.method, endpoint.route), endpoint


RESPONSE = "/v1/responses/{response_id}"
PROXIED: dict[tuple[str, str], Endpoint] = dict(
    map(
        _row,
        (
            Endpoint(
                "/v1/chat/completions", "/chat/completions", "chat", check=has_choice("message"), hedged=True,
                dialects=MappingProxyType({ANTHROPIC: CHAT_VIA_MESSAGES}), usage_ask=True,
            ),
            Endpoint(
                "/v1/completions", "/completions", "completions", check=has_choice("text"), hedged=True, usage_ask=True
            ),
            Endpoint("/v1/embeddings", "/embeddings", "embeddings", check=has_data, hedged=True),
            Endpoint("/v1/responses", "/responses", "responses", events=RESPONSES_EVENTS, pins=True),
            Endpoint("/v1/moderations", "/moderations", "moderations", check=has_results),  # a result per input
            Endpoint("/v1/images/generations", "/images/generations", "images", check=has_data),  # an image per `n`
            Endpoint("/v1/audio/speech", "/audio/speech", "audio", answer="binary"),
            Endpoint(
                "/v1/audio/transcriptions", "/audio/transcriptions", "audio", form="multipart", answer="document",
                events=TRANSCRIPT_EVENTS,
            ),
            Endpoint("/v1/audio/translations", "/audio/translations", "audio", form="multipart", answer="document"),
            # Anthropic's Messages API: natively to Anthropic-speaking offers, translated to the others;
            # count_tokens only natively (another tokenizer's count would mislead: see the README).
            Endpoint(
                "/v1/messages", "/messages", "chat", check=is_message, events=MESSAGES_EVENTS, api=ANTHROPIC,
                dialects=MappingProxyType({OPENAI: MESSAGES_VIA_CHAT}), validate=check_messages,
                usage=answer_usage,
            ),
            Endpoint(
                "/v1/messages/count_tokens", "/messages/count_tokens", "chat", check=has_input_tokens,
                events=MESSAGES_EVENTS, api=ANTHROPIC, validate=partial(check_messages, max_tokens=False),
                usage=answer_usage, measured=False,
            ),
            # A stored response's follow-ups: at the provider that holds it (proxy.http.chain).
            Endpoint(RESPONSE, "/responses/{response_id}", "responses", "GET", "none", "raw", pinned=True),
            Endpoint(RESPONSE, "/responses/{response_id}", "responses", "DELETE", "none", "raw", pinned=True),
            Endpoint(
                RESPONSE + "/cancel", "/responses/{response_id}/cancel", "responses", "POST", "none", "raw",
                pinned=True, label=RESPONSE,
            ),
            Endpoint(
                RESPONSE + "/input_items", "/responses/{response_id}/input_items", "responses", "GET", "none", "raw",
                pinned=True, label=RESPONSE,
            ),
        ),
    )
)
PROXIED_POSTS = frozenset(route for (method, route), e in PROXIED.items() if method == "POST" and not e.pinned)
_RESPONSES_PREFIX = "/v1/responses/"
OTHER_ROUTES = ("GET /v1/models", "GET /v1/models/{model}", "GET /v1/generation")


def match(method: str, path: str) -> tuple[Endpoint, str] | None:
    """The endpoint serving `method path`, and the response id its path names ("" for none)."""
    endpoint = PROXIED.get((method, path))
    if endpoint is not None:
        return endpoint, ""
    if not path.startswith(_RESPONSES_PREFIX):
        return None
    ident, _, rest = path[len(_RESPONSES_PREFIX) :].partition("/")
    if not ident:
        return None
    found = PROXIED.get((method, RESPONSE + (f"/{rest}" if rest else "")))
    return None if found is None else (found, ident)


def route_patterns() -> dict[str, list[str]]:
    """Each proxied route (pattern) with its methods, for the app's router (405s name the right one)."""
    out: dict[str, list[str]] = {}
    for method, route in PROXIED:
        out.setdefault(route, []).append(method)
    return out


def route_list() -> str:
    """Every route this proxy serves under /v1, for the 404 hint."""
    return ", ".join([*(f"{method} {route}" for method, route in PROXIED), *OTHER_ROUTES])

