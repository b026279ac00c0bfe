"""Our own error answers in the client's API: OpenAI's envelope, or Anthropic's on the Messages routes.

The handler answers errors through `errors_for(endpoint)`: `OPENAI` is `proxy.http.answers` (the
SPEC's shapes); `ANTHROPIC` answers the Messages API's clients as Anthropic does
(`proxy.dialects.envelopes`: `{"type": "error", "error": {"type", "message"}, "request_id"}` with
Anthropic's status codes), so the official anthropic SDKs and Claude Code raise their own classes
(`RateLimitError`, `OverloadedError`, ...) and retry as they would against Anthropic:

- a client error keeps its status; its type is Anthropic's for that status;
- every offer failed: 529 `overloaded_error` when every attempt was an overload (a 529, or an
  `overloaded_error` event before the first output); 429 `rate_limit_error` when every attempt was
  rate limited, or none was made because every offer is cooling down after rate limits (with
  `Retry-After`); else 503 `api_error`. The attempts list is in `error.attempts`, and
  `Retry-After` / `x-should-retry` say the same as on the chat routes (the anthropic SDKs obey both);
- a stream the server stops (shutdown) ends with an `error` event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from proxy.dialects.envelopes import anthropic_error, error_event, error_type
from proxy.errors import AllOffersFailed, ClientError
from proxy.failover.endpoints import Endpoint
from proxy.http.answers import Headers, all_failed, client_error, error_body, retry_headers
from proxy.provider_api import ANTHROPIC
from proxy.types import Attempt

RATE_LIMITED = frozenset({"429", "rate_limited", "over_rate_budget"})


class ErrorAnswers(Protocol):
    def client_error(self, exc: ClientError, request_id: str) -> tuple[int, bytes]: ...
    def all_failed(self, exc: AllOffersFailed, model: str, request_id: str) -> tuple[int, bytes, Headers]: ...
    def server_error(self, message: str, code: str, request_id: str) -> bytes: ...
    def stream_error(self, message: str, code: str) -> bytes: ...


class OpenAIErrors:
    """The SPEC's OpenAI-shaped errors (`proxy.http.answers`)."""

    def client_error(self, exc: ClientError, request_id: str) -> tuple[int, bytes]:
        return client_error(exc)

    def all_failed(self, exc: AllOffersFailed, model: str, request_id: str) -> tuple[int, bytes, Headers]:
        return all_failed(exc, model)

    def server_error(self, message: str, code: str, request_id: str) -> bytes:
        return error_body(message, "server_error", code)

    def stream_error(self, message: str, code: str) -> bytes:
        return b"data: " + error_body(message, "server_error", code) + b"\n\n"


class AnthropicErrors:
    """Anthropic's envelope and status codes (see the module docstring)."""

    def client_error(self, exc: ClientError, request_id: str) -> tuple[int, bytes]:
        return exc.status, anthropic_error(error_type(exc.status), exc.message, request_id=request_id)

    def all_failed(self, exc: AllOffersFailed, model: str, request_id: str) -> tuple[int, bytes, Headers]:
        status = failed_status(exc.attempts, exc.retry_after_s)
        if exc.attempts:
            message = f"every provider for {model} failed ({len(exc.attempts)} attempt(s)); see attempts"
        else:
            message = f"every provider for {model} is cooling down after rate limiting; retry later"
        attempts = [a.as_json(model) for a in exc.attempts]
        body = anthropic_error(error_type(status), message, request_id=request_id, attempts=attempts)
        return status, body, retry_headers(exc.retry_after_s)

    def server_error(self, message: str, code: str, request_id: str) -> bytes:
        return anthropic_error("api_error", message, request_id=request_id)

    def stream_error(self, message: str, code: str) -> bytes:
        return error_event("api_error", message)


def failed_status(attempts: Sequence[Attempt], retry_after_s: float | None) -> int:
    """529 when every attempt was an overload, 429 when every one was rate limited (or none was
    made, every offer cooling down), else 503."""
    if attempts and all(_overloaded(a) for a in attempts):
        return 529
    if all(a.outcome in RATE_LIMITED for a in attempts) and (attempts or retry_after_s is not None):
        return 429
    return 503


def _overloaded(attempt: Attempt) -> bool:
    return attempt.outcome == "529" or (attempt.outcome == "error_in_answer" and "overloaded" in attempt.detail.lower())


OPENAI = OpenAIErrors()
ANTHROPIC_ERRORS = AnthropicErrors()


def errors_for(endpoint: Endpoint) -> ErrorAnswers:
    return ANTHROPIC_ERRORS if endpoint.api == ANTHROPIC else OPENAI
