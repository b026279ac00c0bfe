"""The verdict on what a provider said in a 200: an answer, an error, or nothing yet. Pure.

Routers and self-hosted servers report failure inside a 200, in every place an answer can carry one:

    where                                         who
    a top-level `error` object or string          OpenRouter `{"error": {"message": "Provider returned error",
                                                  "code": 502}}`, a stream's `data: {"error": ...}`
    inside a choice: `choices[i].error`           OpenRouter's mid-stream error, with `finish_reason: "error"`
    `"object": "error"`                           vLLM, Fireworks
    a `detail` alone                              FastAPI servers
    a vendor's own status envelope                MiniMax `base_resp.status_code` != 0, `success: false`,
                                                  `status: "error"`, Baidu `error_code`, `code` + `message`
                                                  with no answer (DashScope, SiliconFlow), an `errors` list
    a finish reason that means error              `error` (OpenRouter), `abort` (vLLM), `ERROR_TOXIC` (Cohere),
                                                  `MALFORMED_FUNCTION_CALL` (Google)

A finish reason is a non-empty string (`finish_reason`, or Google's `finishReason`): Ollama and SGLang
send `"finish_reason": ""` on every chunk, which finishes nothing. These functions read parsed JSON
only; the attempt loop and the relay decide what to do with the answer.

- `answer_failure(check, body)`: a non-streaming body that is an error or carries no answer (`check`
  is the endpoint's: `has_choice`, `has_data`, `has_results`, or None).
- `first_event_verdict(output, event)`: before commit, is this stream event output (commit), nothing
  yet (hold), or a failure (fail over)? `output` is the endpoint's "is this event output?"
  predicate (`chat_output` here; the typed streams' in `proxy.upstream.responses_events`).
- `stream_event_outcome(payload)`: after commit, is this event an in-band error, which choices did it
  finish, what usage did it carry (`proxy.upstream.usage.usage_object`)?

Which endpoint uses which predicate and check is the endpoint table's (`proxy.failover.endpoints`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

import orjson

from proxy.errors import EmptyAnswer, ErrorInAnswer, MalformedResponse, UpstreamError
from proxy.upstream.sse import EventOutcome, SseEvent, is_done
from proxy.upstream.usage import usage_object

OUTPUT_FIELDS = frozenset(
    {"content", "reasoning", "reasoning_content", "refusal", "tool_calls", "function_call", "audio"}
)


class FirstEvent(Enum):
    HOLD = "hold"  # nothing the client asked for yet: keep it, keep reading
    OUTPUT = "output"  # commit: relay what was held, then the rest as it comes


ERROR_FINISHES = frozenset(
    {"error", "abort", "aborted", "failed", "failure", "cancelled", "canceled", "malformed_function_call"}
)
NORMAL_FINISHES = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})  # the usual, quickly
SUCCESS_CODES = frozenset({0, 200, "0", "200", "ok", "success", "succeeded"})


def error_of(payload: Mapping[str, Any]) -> str | None:
    """The provider's error message when this JSON object is an error (at the top level, or a vendor's
    status envelope), else None. Errors inside a choice are `choices_outcome`'s."""
    error = payload.get("error")
    if error:
        return _message(error, payload)
    if "choices" in payload:  # a chunk of an answer: its errors are inside its choices, or MiniMax's envelope
        return _base_resp(payload["base_resp"]) if "base_resp" in payload else None
    return _envelope_error(payload)


def _message(error: Any, holder: Mapping[str, Any]) -> str:
    """The message of an `error` value: an object's `message`, a string itself; `"error": true`
    takes the message beside it."""
    if isinstance(error, dict):
        message = error.get("message") or error.get("msg")
        return str(message)[:200] if message else "the provider answered with an error object"
    if isinstance(error, list):
        return "the provider answered with a list of errors"
    if error is True:
        return str(holder.get("message") or "the provider answered with an error flag")[:200]
    return str(error)[:200]


def _base_resp(envelope: Any) -> str | None:
    """MiniMax's `base_resp`: `status_code` 0 is success, anything else an error (`status_msg`)."""
    if not isinstance(envelope, dict) or envelope.get("status_code") in (0, None):
        return None
    return str(envelope.get("status_msg") or f"status_code {envelope.get('status_code')}")[:200]


def _envelope_error(payload: Mapping[str, Any]) -> str | None:
    """An answer-less object that says it failed, in one of the envelopes of the module docstring."""
    if payload.get("object") == "error":  # vLLM, Fireworks
        return str(payload.get("message") or "the provider answered with an error object")[:200]
    if "detail" in payload and len(payload) == 1:  # FastAPI-style servers
        return str(payload["detail"])[:200]
    found = _base_resp(payload["base_resp"]) if "base_resp" in payload else None
    return found if found is not None else _status_envelope(payload)


def _status_envelope(payload: Mapping[str, Any]) -> str | None:
    """`success: false`, a failed `status`, a non-empty `errors` list, or a failing `code`/`error_code`
    with a message beside it (and, since the caller saw no `choices`, no answer). A typed event (one
    with a `type`, the Responses API's) is its endpoint's predicate to judge."""
    if "type" in payload:
        return None
    text = payload.get("message") or payload.get("msg") or payload.get("error_msg")
    errors = payload.get("errors")
    if payload.get("success") is False or _failed_status(payload.get("status")):
        return str(text or "the provider answered with a failure status")[:200]
    if isinstance(errors, list) and errors:
        return str(text or errors[0])[:200]
    code = payload.get("error_code", payload.get("code"))
    if isinstance(code, str | int) and text and code not in SUCCESS_CODES:
        return str(text)[:200]
    return None


def _failed_status(status: Any) -> bool:
    if isinstance(status, str):
        return status.lower() in ("error", "failed", "failure", "fail")
    return isinstance(status, int) and not isinstance(status, bool) and status >= 400


def finish_reason_of(choice: Mapping[str, Any]) -> str | None:
    """A choice's finish reason: a non-empty string (`finish_reason`, or Google's `finishReason`)."""
    reason = choice.get("finish_reason")
    if reason is None:
        reason = choice.get("finishReason")
    return reason if isinstance(reason, str) and reason else None


def answer_finish_reason(parsed: Any) -> str | None:
    """Why a whole answer ended: its first choice's finish reason (chat, completions), else Anthropic's
    `stop_reason` (Messages), else a Responses API object's `status`; None when it says none."""
    if not isinstance(parsed, dict):
        return None
    choices = parsed.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return finish_reason_of(choices[0])
    for name in ("stop_reason", "status"):
        reason = parsed.get(name)
        if isinstance(reason, str) and reason:
            return reason
    return None


def is_error_finish(reason: str) -> bool:
    """Does this finish reason say the generation failed? (`error`, `ERROR_TOXIC`, `abort`...)"""
    if reason in NORMAL_FINISHES:
        return False
    lowered = reason.lower()
    return lowered in ERROR_FINISHES or lowered.startswith("error")


def choices_outcome(choices: Any) -> tuple[str | None, tuple[int, ...]]:
    """(the error a choice carries, or a finish reason that means one; the indices of the choices
    that finished). A choice's index is its `index`, else its position."""
    if not isinstance(choices, list):
        return None, ()
    error: str | None = None
    finished: list[int] = []
    for position, choice in enumerate(choices):
        if not isinstance(choice, dict):
            continue
        reason = finish_reason_of(choice)
        if reason is not None:
            index = choice.get("index", position)
            finished.append(index if isinstance(index, int) else position)
            if error is None and is_error_finish(reason):
                error = f"finish_reason {reason!r}"
        inner = choice.get("error")
        if error is None and inner:
            error = _message(inner, choice)
    return error, tuple(finished)


def _choice_has_output(choice: Any) -> bool:
    if not isinstance(choice, dict):
        return False
    if choice.get("text") or finish_reason_of(choice) is not None:
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
    inner, _ = choices_outcome(payload.get("choices"))
    if inner is not None:
        raise ErrorInAnswer(f"the provider's stream ended a choice with an error: {inner}")
    return FirstEvent.OUTPUT if output(event.name, payload) else FirstEvent.HOLD


def stream_event_outcome(payload: Any) -> EventOutcome:
    """After commit: is this event an in-band error, which choices did it finish, what usage did it carry?
    A JSON array (Google's list of errors) is an error when one of its objects is."""
    if isinstance(payload, list):
        return EventOutcome(any(isinstance(p, dict) and error_of(p) is not None for p in payload), (), None)
    if not isinstance(payload, dict):
        return EventOutcome(False, (), None)
    inner, finished = choices_outcome(payload.get("choices"))
    failed = inner is not None or error_of(payload) is not None
    return EventOutcome(failed, finished, usage_object(payload))


def answer_failure(check: AnswerCheck | None, body: Any) -> UpstreamError | None:
    """A non-streaming 200 body that is not an answer: `ErrorInAnswer` when it carries an error (any of
    the module docstring's, a choice's included), `EmptyAnswer` when it carries no answer
    (chat and text completions: no choice with a message or text; embeddings and images: no `data`;
    moderations: no `results`)."""
    if not isinstance(body, dict):
        return MalformedResponse("the provider's answer is not a JSON object")
    message = error_of(body)
    if message is None and "choices" in body:
        message = _choice_error(body["choices"])
    if message is not None:
        return ErrorInAnswer(f"the provider answered 200 with an error: {message}")
    if check is not None and not check(body):
        return EmptyAnswer("the provider answered 200 without an answer")
    return None


def _choice_error(choices: Any) -> str | None:
    """The error a choice of a whole answer carries, or its finish reason when that means one."""
    if not isinstance(choices, list):
        return None
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        inner = choice.get("error")
        if inner:
            return _message(inner, choice)
        reason = choice.get("finish_reason")
        if type(reason) is str and reason in NORMAL_FINISHES:  # the usual answer, without two calls
            continue
        reason = finish_reason_of(choice)
        if reason is not None and is_error_finish(reason):
            return f"finish_reason {reason!r}"
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
