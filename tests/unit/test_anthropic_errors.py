"""Errors on the Messages routes in Anthropic's envelope and status codes (`proxy.dialects.envelopes`,
`proxy.http.api_errors`), and error bodies carried between the two envelopes."""

from __future__ import annotations

import orjson
import pytest

from proxy.dialects.envelopes import error_event, error_type, read_error, to_anthropic, to_openai
from proxy.errors import AllOffersFailed, BodyTooLarge, ModelNotFound, Unauthorized
from proxy.failover.judge.refusals import Cooldown, classify_refusal
from proxy.http.api_errors import ANTHROPIC_ERRORS, failed_status
from proxy.types import Attempt

# Anthropic's 529, as its errors page shows the envelope (https://docs.claude.com/en/api/errors).
OVERLOADED = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
# OpenAI's 400 for a parameter the model does not take (the wording proxy.failover.judge.refusals quotes for
# OpenAI's `unsupported_parameter`, as tests/unit/test_refusals.py does).
OPENAI_400 = (
    b'{"error": {"message": "Unsupported parameter: \'max_tokens\' is not supported with this model. Use '
    b'\'max_completion_tokens\' instead.", "type": "invalid_request_error", "param": "max_tokens", '
    b'"code": "unsupported_parameter"}}'
)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
     (404, "not_found_error"), (413, "request_too_large"), (429, "rate_limit_error"), (500, "api_error"),
     (529, "overloaded_error"), (422, "invalid_request_error"), (502, "api_error")],
)  # fmt: skip
def test_each_status_has_anthropics_error_type(status: int, kind: str) -> None:
    assert error_type(status) == kind


def test_error_bodies_cross_the_envelopes() -> None:
    assert read_error(OVERLOADED) == ("overloaded_error", "Overloaded")
    anthropic = orjson.loads(to_anthropic(400, OPENAI_400))
    assert anthropic["type"] == "error" and anthropic["error"]["type"] == "invalid_request_error"
    assert anthropic["error"]["message"].startswith("Unsupported parameter: 'max_tokens'")
    openai = orjson.loads(to_openai(529, OVERLOADED))
    assert openai["error"]["message"] == "Overloaded" and openai["error"]["type"] == "overloaded_error"
    assert orjson.loads(to_anthropic(502, b"<html>bad gateway</html>"))["error"]["message"] == "<html>bad gateway</html>"


def test_the_stream_error_event_is_the_recorded_one() -> None:
    # https://platform.claude.com/docs/en/build-with-claude/streaming, "Error events"
    assert error_event("overloaded_error", "Overloaded") == b"event: error\ndata: " + OVERLOADED + b"\n\n"


def attempt(outcome: str, detail: str = "") -> Attempt:
    return Attempt("p", "m", outcome, 1.0, True, detail)


@pytest.mark.parametrize(
    ("attempts", "retry_after", "status"),
    [
        ([attempt("529"), attempt("529")], None, 529),
        ([attempt("529"), attempt("error_in_answer", "the provider's stream reported an error: Overloaded")], None, 529),
        ([attempt("529"), attempt("503")], None, 503),
        ([attempt("429"), attempt("rate_limited")], 3.0, 429),
        ([], 12.0, 429),  # every offer cooling down after rate limits
        ([attempt("connect_error")], None, 503),
    ],
)
def test_a_failure_of_every_offer_gets_anthropics_status(attempts: list[Attempt], retry_after: float | None,
                                                        status: int) -> None:  # fmt: skip
    assert failed_status(attempts, retry_after) == status


def test_our_errors_are_in_anthropics_envelope_with_the_request_id() -> None:
    status, body = ANTHROPIC_ERRORS.client_error(Unauthorized("no key"), "req-1")
    assert status == 401
    assert orjson.loads(body) == {"type": "error", "error": {"type": "authentication_error", "message": "no key"},
                                  "request_id": "req-1"}  # fmt: skip
    assert ANTHROPIC_ERRORS.client_error(ModelNotFound("x"), "r")[0] == 404
    assert orjson.loads(ANTHROPIC_ERRORS.client_error(BodyTooLarge("big"), "r")[1])["error"]["type"] == "request_too_large"
    status, body, headers = ANTHROPIC_ERRORS.all_failed(AllOffersFailed([attempt("529")]), "claude-x", "req-2")
    error = orjson.loads(body)["error"]
    assert status == 529 and error["type"] == "overloaded_error" and error["attempts"][0]["status"] == "529"
    assert (b"x-should-retry", b"false") in headers


def anthropic_body(kind: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011CSHoE"})


@pytest.mark.parametrize(
    ("status", "body", "kind", "retryable", "cooldown"),
    [
        # the overload Anthropic's errors page describes: fail over, the offer cools down
        (529, OVERLOADED, "", True, Cooldown.OFFER),
        # a 429 is judged by its status and the envelope's type (https://docs.claude.com/en/api/errors)
        (429, anthropic_body("rate_limit_error", "Rate limited"), "", True, Cooldown.OFFER),
        # "prompt is too long" (the wording proxy.failover.judge.refusals quotes): a larger offer may take it
        (400, anthropic_body("invalid_request_error", "prompt is too long: 203052 tokens > 200000 maximum"),
         "context_length", True, Cooldown.NONE),
        # request_too_large, in the errors page's words: over the 32 MB Anthropic's endpoints take; a size limit of
        # this offer (others take other sizes), read with the context limits: an offer not known smaller is tried
        (413, anthropic_body("request_too_large", "Request exceeds the maximum allowed number of bytes."),
         "context_length", True, Cooldown.NONE),
        (401, anthropic_body("authentication_error", "invalid x-api-key"), "", True, Cooldown.PROVIDER),
        (400, anthropic_body("invalid_request_error", "Your credit balance is too low to access the Anthropic API."),
         "insufficient_quota", True, Cooldown.PROVIDER),
    ],
)  # fmt: skip
def test_the_refusal_table_reads_anthropics_envelope(
    status: int, body: bytes, kind: str, retryable: bool, cooldown: Cooldown
) -> None:
    verdict = classify_refusal(status, body, [], 0.0)
    assert (verdict.kind, verdict.retryable, verdict.cooldown) == (kind, retryable, cooldown)
