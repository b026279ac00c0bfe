"""Anthropic's error envelope and status codes, and an error body carried across the two APIs. Pure.

Anthropic (https://docs.claude.com/en/api/errors): every error is JSON with a top-level `error`
object that always has a `type` and a `message`, plus a `request_id`:

    {"type": "error", "error": {"type": "not_found_error", "message": "..."}, "request_id": "req_..."}

400 `invalid_request_error` (also for other 4xx), 401 `authentication_error`, 403
`permission_error`, 404 `not_found_error`, 413 `request_too_large`, 429 `rate_limit_error`, 500
`api_error`, 529 `overloaded_error`. In a stream the same object comes as an `error` event
(https://platform.claude.com/docs/en/build-with-claude/streaming, "Error events"):

    event: error
    data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

OpenAI's envelope is `{"error": {"message", "type", "code", "param"}}`. The official SDKs of each
API pick their exception class by status, so a status is always kept as it is.
"""

from __future__ import annotations

from typing import Any

import orjson

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
OVERLOADED = "overloaded_error"
MESSAGE_LIMIT = 2000


def error_type(status: int) -> str:
    """Anthropic's error `type` for a status: its own name, else `api_error` (5xx) or `invalid_request_error`."""
    found = ERROR_TYPES.get(status)
    if found is not None:
        return found
    return "api_error" if status >= 500 else "invalid_request_error"


def anthropic_error(kind: str, message: str, *, request_id: str | None = None, **extra: Any) -> bytes:
    """The error body: `{"type": "error", "error": {"type": kind, "message": message, **extra}}`."""
    body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message, **extra}}
    if request_id:
        body["request_id"] = request_id
    return orjson.dumps(body)


def error_event(kind: str, message: str) -> bytes:
    """An `error` event of a Messages stream (the SDKs raise it as an `APIStatusError`)."""
    return b"event: error\ndata: " + anthropic_error(kind, message) + b"\n\n"


def read_error(body: bytes) -> tuple[str, str]:
    """(type, message) of an error body in either envelope (or vLLM's `{"object": "error"}`, a
    FastAPI `{"detail": ...}`, plain text); "" where the body does not say."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "", body[:MESSAGE_LIMIT].decode("utf-8", "replace").strip()
    if not isinstance(parsed, dict):
        return "", str(parsed)[:MESSAGE_LIMIT]
    error = parsed.get("error")
    if isinstance(error, str):
        return "", error[:MESSAGE_LIMIT]
    if not isinstance(error, dict):
        error = parsed
    message = error.get("message", error.get("detail", ""))
    kind = error.get("type", "")
    return (kind if isinstance(kind, str) else ""), str(message)[:MESSAGE_LIMIT]


def to_anthropic(status: int, body: bytes) -> bytes:
    """An offer's error body (any envelope) in Anthropic's, its type taken from the status."""
    _, message = read_error(body)
    return anthropic_error(error_type(status), message or f"the provider answered {status}")


def to_openai(status: int, body: bytes) -> bytes:
    """An Anthropic error body in OpenAI's envelope (Anthropic's type kept: its names are OpenAI's too)."""
    kind, message = read_error(body)
    error = {"message": message or f"the provider answered {status}", "type": kind or error_type(status)}
    return orjson.dumps({"error": {**error, "param": None, "code": None}})
