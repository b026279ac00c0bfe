"""The healthy behaviour of each /v1 endpoint: a pure function from the request to an `Answer`.

Faults are applied around these by `proxy.mock.app`; nothing here sleeps or touches a socket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.mock.answers import payloads, shaped
from proxy.mock.settings import MockConfig


@dataclass(frozen=True, slots=True)
class Answer:
    """A `body` of `content_type` with `status`, or (when `events` is set) a 200 stream of those SSE events."""

    status: int = 200
    body: bytes = b""
    events: tuple[bytes, ...] | None = None
    content_type: bytes = b"application/json"


@dataclass(frozen=True, slots=True)
class Call:
    """One /v1 request as a handler sees it."""

    config: MockConfig
    payload: Any  # the parsed JSON body (None for a GET)
    seq: int  # this mock's request number, part of the answer's id
    chunks: int  # content pieces in the answer
    body: bytes = b""  # the raw request body (a multipart form is read from it)
    content_type: bytes = b""
    store: dict[str, dict[str, Any]] = field(default_factory=dict)  # this mock's stored responses


Handler = Callable[[Call], Answer]
# Azure OpenAI's answer to `stream_options` (https://github.com/Pythagora-io/gpt-pilot/issues/1022)
STREAM_OPTIONS_REFUSED = orjson.dumps(
    {
        "error": {
            "message": "Unrecognized request argument supplied: stream_options. Please contact us through an Azure "
            "support request at: https://go.microsoft.com/fwlink/?linkid=2213926 for further questions.",
            "type": "invalid_request_error",
            "param": "",
            "code": None,
        }
    }
)


def error(status: int, message: str) -> Answer:
    return Answer(status, payloads.error_body(status, message))


@dataclass(frozen=True, slots=True)
class Generated:
    """How one generating endpoint reads its input and shapes its reply."""

    field: str  # what the reply answers: chat `messages`, or a `prompt`
    kinds: type | tuple[type, ...]
    prefix: str
    chunks: Callable[..., Iterable[bytes]]
    whole: Callable[..., bytes]


CHAT = Generated("messages", list, "chatcmpl", payloads.chat_chunks, payloads.chat_completion)
COMPLETION = Generated("prompt", (str, list), "cmpl", payloads.completion_chunks, payloads.text_completion)


def chat_completions(call: Call) -> Answer:
    return _generated(call, CHAT)


def completions(call: Call) -> Answer:
    return _generated(call, COMPLETION)


def _generated(call: Call, kind: Generated) -> Answer:
    """A generated reply, streamed as events or as one body."""
    problem = _check_model(call) or _require(call, kind.field, kind.kinds)
    if problem is not None:
        return problem
    payload, name = call.payload, call.config.name
    ident, model = f"{kind.prefix}-{name}-{call.seq}", payload["model"]
    pieces = payloads.reply_pieces(name, call.chunks)
    tokens = payloads.usage(_words(payload[kind.field]), len(pieces))
    if kind is CHAT and shaped.wants_shape(payload):
        return _shaped(call, ident, "".join(pieces), tokens)
    if payload.get("stream"):
        tokens_or_none = tokens if _include_usage(payload) else None
        return Answer(events=tuple(kind.chunks(ident, model, name, pieces, tokens_or_none)))
    return Answer(body=kind.whole(ident, model, name, "".join(pieces), tokens))


def _shaped(call: Call, ident: str, text: str, tokens: dict[str, int]) -> Answer:
    """A chat answer that honours `tools`, `n` or `response_format` (`proxy.mock.answers.shaped`)."""
    payload, name = call.payload, call.config.name
    problem = shaped.check_shape(payload)
    if problem is not None:
        return error(400, problem)
    if payload.get("stream"):
        usage = tokens if _include_usage(payload) else None
        return Answer(
            events=tuple(shaped.shaped_chunks(payload, ident, name=name, seq=call.seq, text=text, usage=usage))
        )
    return Answer(body=shaped.shaped_completion(payload, ident, name=name, seq=call.seq, text=text, usage=tokens))


def embeddings(call: Call) -> Answer:
    problem = _check_model(call) or _require(call, "input", (str, list))
    if problem is not None:
        return problem
    payload = call.payload
    raw = payload["input"]
    inputs = [raw] if isinstance(raw, str) else [str(item) for item in raw]
    dimensions = payload.get("dimensions", 8)
    if not isinstance(dimensions, int) or not 1 <= dimensions <= 4096:
        return error(400, "'dimensions' must be an integer between 1 and 4096")
    as_base64 = payload.get("encoding_format") == "base64"
    return Answer(body=payloads.embeddings(payload["model"], inputs, dimensions, as_base64))


def models(call: Call) -> Answer:
    return Answer(body=payloads.model_list(call.config))


ROUTES: dict[str, tuple[str, Handler]] = {
    "/v1/chat/completions": ("POST", chat_completions),
    "/v1/completions": ("POST", completions),
    "/v1/embeddings": ("POST", embeddings),
    "/v1/models": ("GET", models),
}


def _check_model(call: Call) -> Answer | None:
    payload = call.payload
    if not isinstance(payload, dict):
        return error(400, "the request body must be a JSON object")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        return error(400, "you must provide a model parameter")
    if call.config.strict_models and model not in call.config.models:
        return error(404, f"The model `{model}` does not exist on mock {call.config.name}")
    if call.config.refuse_stream_options and "stream_options" in payload:
        return Answer(400, STREAM_OPTIONS_REFUSED)
    return None


def _require(call: Call, key: str, kind: type | tuple[type, ...]) -> Answer | None:
    if not isinstance(call.payload.get(key), kind):
        return error(400, f"missing or invalid '{key}'")
    return None


def _include_usage(payload: dict[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def _words(value: Any) -> int:
    """A rough, deterministic token count of a prompt: its words, at least 1."""
    if isinstance(value, str):
        return max(1, len(value.split()))
    if isinstance(value, list):
        return max(1, sum(_words(item) for item in value))
    if isinstance(value, dict):
        return _words(value.get("content") or value.get("text") or "")
    return 1
