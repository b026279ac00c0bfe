"""The verdict on what a provider said in a 200: an answer, an error, or nothing yet. Pure.

Routers and self-hosted servers report failure inside a 200: OpenRouter's non-streaming
`{"error": {"message": "Provider returned error", "code": 502}}`, a stream whose first real event is
`data: {"error": ...}` after `: OPENROUTER PROCESSING` keep-alives, vLLM's `{"object": "error", ...}`,
a FastAPI `{"detail": ...}`, a `finish_reason: "error"` chunk. These functions read parsed JSON only;
the attempt loop and the relay decide what to do with the answer.

- `answer_failure(check, body)`: a non-streaming body that is an error or carries no answer (`check`
  is the endpoint's: `has_choice`, `has_data`, `has_results`, or None).
- `first_event_verdict(output, event)`: before commit, is this stream event output (commit), nothing
  yet (hold), or a failure (fail over)? `output` is the endpoint's "is this event output?"
  predicate (`chat_output` here; the typed streams' in `proxy.upstream.responses_events`).
- `stream_event_outcome(payload)`: after commit, is this event an in-band error, which choices did it finish?

Which endpoint uses which predicate and check is the endpoint table's (`proxy.failover.endpoints`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

import orjson

from proxy.errors import EmptyAnswer, ErrorInAnswer, MalformedResponse, UpstreamError
from proxy.upstream.sse import SseEvent, is_done

OUTPUT_FIELDS = frozenset(
    {"content", "reasoning", "reasoning_content", "refusal", "tool_calls", "function_call", "audio"}
)


class FirstEvent(Enum):
    HOLD = "hold"  # nothing the client asked for yet: keep it, keep reading
    OUTPUT = "output"  # commit: relay what was held, then the rest as it comes


def error_of(payload: Mapping[str, Any]) -> str | None:
    """The provider's error message when this JSON object is an error, else None."""
    if "error" not in payload and "object" not in payload and "detail" not in payload:
        return None  # a plain chunk: no lookups beyond these three
    error = payload.get("error")
    if isinstance(error, dict) and error:
        message = error.get("message")
        return str(message)[:200] if message else "the provider answered with an error object"
    if isinstance(error, str) and error:
        return error[:200]
    if payload.get("object") == "error":  # vLLM, Fireworks
        return str(payload.get("message") or "the provider answered with an error object")[:200]
    if "detail" in payload and len(payload) == 1:  # FastAPI-style servers
        return str(payload["detail"])[:200]
    return None


def _finish_reasons(choices: Any) -> list[tuple[int, Any]]:
    if not isinstance(choices, list):
        return []
    out = []
    for position, choice in enumerate(choices):
        if isinstance(choice, dict):
            index = choice.get("index", position)
            out.append((index if isinstance(index, int) else position, choice.get("finish_reason")))
    return out


def _choice_has_output(choice: Any) -> bool:
    if not isinstance(choice, dict):
        return False
    if choice.get("finish_reason") is not None or choice.get("text"):
        return True
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        delta = choice.get("message")
    if not isinstance(delta, dict):
        return False
    for field, value in delta.items():  # noqa: SIM110 (a role-only delta has two keys: cheaper than every field)
        if value and field in OUTPUT_FIELDS:
            return True
    return False


def chat_output(event_name: bytes | None, payload: Mapping[str, Any]) -> bool:
    """A chat or text completion chunk carries output: content, reasoning, a tool call, a refusal,
    audio, text, a `finish_reason`, or usage. A role-only delta, an empty delta, or a chunk with
    no choices (Azure's content-filter preamble, `prompt_filter_results`) does not."""
    if isinstance(payload.get("usage"), dict) and payload["usage"]:
        return True
    choices = payload.get("choices")
    if not isinstance(choices, list):
        return False
    for choice in choices:  # noqa: SIM110 (as above)
        if _choice_has_output(choice):
            return True
    return False


OutputPredicate = Callable[[bytes | None, Mapping[str, Any]], bool]
"""Is this stream event (its name, its JSON data) something the client asked for? It may raise the
attempt's failure for an event its endpoint defines as one."""
AnswerCheck = Callable[[Mapping[str, Any]], bool]
"""Does this 200 JSON body carry an answer (an endpoint's own rule)?"""


def first_event_verdict(output: OutputPredicate, event: SseEvent) -> FirstEvent:
    """Judge one complete event before commit. Raises the attempt's failure: `ErrorInAnswer` for an
    error event (or a `finish_reason: "error"`), `EmptyAnswer` for `[DONE]` before any output,
    `MalformedResponse` for data that is not a JSON object."""
    if event.data is None:
        return FirstEvent.HOLD  # a comment, a keep-alive, an `event:`-only ping
    if is_done(event.data):
        raise EmptyAnswer("the provider's stream ended before any output")
    try:
        payload = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        raise MalformedResponse("a stream event of the provider is not valid JSON") from None
    if not isinstance(payload, dict):
        raise MalformedResponse("a stream event of the provider is not a JSON object")
    message = error_of(payload)
    if message is not None:
        raise ErrorInAnswer(f"the provider's stream reported an error: {message}")
    if any(reason == "error" for _, reason in _finish_reasons(payload.get("choices"))):
        raise ErrorInAnswer("the provider's stream ended a choice with finish_reason 'error'")
    return FirstEvent.OUTPUT if output(event.name, payload) else FirstEvent.HOLD


def stream_event_outcome(payload: Mapping[str, Any]) -> tuple[bool, tuple[int, ...]]:
    """After commit: (is this event an in-band error, the indices of the choices it finished)."""
    reasons = _finish_reasons(payload.get("choices"))
    failed = error_of(payload) is not None or any(reason == "error" for _, reason in reasons)
    return failed, tuple(index for index, reason in reasons if reason is not None)


def answer_failure(check: AnswerCheck | None, body: Any) -> UpstreamError | None:
    """A non-streaming 200 body that is not an answer: `ErrorInAnswer` when it is an error (an `error`
    object or string, `"object": "error"`, a `detail` alone), `EmptyAnswer` when it carries no answer
    (chat and text completions: no choice with a message or text; embeddings and images: no `data`;
    moderations: no `results`)."""
    if not isinstance(body, dict):
        return MalformedResponse("the provider's answer is not a JSON object")
    message = error_of(body)
    if message is not None:
        return ErrorInAnswer(f"the provider answered 200 with an error: {message}")
    if check is not None and not check(body):
        return EmptyAnswer("the provider answered 200 without an answer")
    return None


def has_choice(field: str) -> AnswerCheck:
    """Chat and text completions: some choice has a `message` (chat) or `text`."""

    def check(body: Mapping[str, Any]) -> bool:
        choices = body.get("choices")
        return isinstance(choices, list) and any(isinstance(c, dict) and c.get(field) is not None for c in choices)

    return check


def has_data(body: Mapping[str, Any]) -> bool:
    data = body.get("data")
    return isinstance(data, list) and len(data) > 0


def has_results(body: Mapping[str, Any]) -> bool:
    results = body.get("results")
    return isinstance(results, list) and len(results) > 0


def expected_choices(body: Mapping[str, Any]) -> int:
    """How many choices a complete answer has: the request's `n` (1 when absent or unreadable)."""
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 128 else 1
