"""Refusals by kind (`proxy.failover.judge.refusal_kinds`, `error_text`, `request_terms`): every recorded
provider refusal of `tests/refusal_cases.py` and `tests/refusal_held_out.py` is judged by what it is
about, and its verdict follows (`proxy.failover.judge.refusals.classify_refusal`).

Generalisation, measured with the classifier as it was before each set was looked at:
- HELD_OUT (33 answers, collected after TUNING passed): 29/33 kinds right (88%), 31/33 verdicts right
  (94%: the other two were recognised as needing a failover by the second opinion). The four misses
  led to three rule changes: "cannot ... for this model", call and response counts ("equal to the
  number of"), and a content-shape complaint about a request that carries images.
- HELD_OUT_2 (13 answers, collected after those changes): 9/13 kinds right (69%), 11/13 verdicts
  right (85%). The misses are below, marked: two kinds that give the same verdict, and one message
  order a single provider enforces, read as the client's mistake. (One label, crush#279, was wrong
  when written: a tool result after a user message is the "tool result without its call" the issue
  counts as a client mistake; corrected after measuring.)
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proxy.errors import UpstreamError, UpstreamStatus
from proxy.failover.judge.error_text import read_error
from proxy.failover.judge.refusal_kinds import Kind, refusal_kind
from proxy.failover.judge.refusals import Cooldown, classify_refusal, is_account_failure, refuses_the_request
from proxy.failover.judge.request_terms import NO_TERMS, normal_name, request_terms
from proxy.failover.judge.second_opinion import FAILED, REFUSED, SERVED, opinion_outcome, second_opinion_offer
from proxy.types import Offer, Preferences
from tests.refusal_cases import TUNING, Case
from tests.refusal_held_out import HELD_OUT, HELD_OUT_2

NOW = 1_700_000_000.0
KNOWN_MISSES = {
    "https://github.com/vllm-project/vllm/issues/6862": "an order of roles one server's chat template enforces, "
    "read as malformed messages (passed through) although another offer would take it",
    "https://github.com/pollinations/pollinations/issues/12136": "an account suspended for its spending: read as "
    "money, the same verdict (the provider cools down)",
    "https://github.com/continuedev/continue/issues/11584": "a free tier's prompt limit under 402: read as a "
    "context limit; the 402 cools the provider down either way",
}


def kind_of(case: Case) -> str:
    return refusal_kind(read_error(case.raw), request_terms(case.request_body(), [case.model])).value


def params(cases: tuple[Case, ...]) -> list[Any]:
    out = []
    for case in cases:
        miss = KNOWN_MISSES.get(case.source)
        marks = [pytest.mark.xfail(strict=True, reason=miss)] if miss else []
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


@pytest.mark.parametrize("case", params(TUNING))
def test_every_recorded_refusal_is_judged_by_its_kind(case: Case) -> None:
    assert kind_of(case) == case.kind


@pytest.mark.parametrize("case", params(HELD_OUT + HELD_OUT_2))
def test_refusals_collected_afterwards_are_judged_by_their_kind(case: Case) -> None:
    assert kind_of(case) == case.kind


EXPECTED_VERDICT = {
    # kind -> (fails over, counted against the offer, cooldown, second opinion)
    "unsupported": (True, False, Cooldown.NONE, False),
    "context_length": (True, False, Cooldown.NONE, False),
    "moderation": (True, False, Cooldown.NONE, False),
    "client_mistake": (False, False, Cooldown.NONE, False),
    "": (False, False, Cooldown.NONE, True),
    "insufficient_quota": (True, True, Cooldown.PROVIDER, False),
    "account": (True, True, Cooldown.PROVIDER, False),
}


@pytest.mark.parametrize("case", [c for c in params(TUNING + HELD_OUT) if c.values[0].status in (400, 410, 422)])
def test_each_kind_has_its_verdict(case: Case) -> None:
    terms = request_terms(case.request_body(), [case.model])
    verdict = classify_refusal(case.status, case.raw, (), NOW, terms)
    assert (verdict.retryable, verdict.counts, verdict.cooldown, verdict.second_opinion) == EXPECTED_VERDICT[case.kind]


@pytest.mark.parametrize("case", [c for c in params(TUNING + HELD_OUT) if c.values[0].kind == "rate_limited"])
def test_a_rate_limit_fails_over_whatever_its_status(case: Case) -> None:
    assert classify_refusal(case.status, case.raw, (), NOW).retryable


# --- the name the request used is what tells an offer's gap from a client's mistake --------------------------------


def test_a_name_the_request_used_turns_a_vague_negation_into_a_missing_field() -> None:
    body = orjson.dumps({"error": {"message": "Invalid JSON payload received. Unknown name \"store\": Cannot find field."}})
    with_store = request_terms({"model": "m", "messages": [], "store": False}, ["m"])
    assert refusal_kind(read_error(body), with_store) is Kind.UNSUPPORTED
    assert refusal_kind(read_error(body), NO_TERMS) is Kind.CLIENT_MISTAKE  # without the name: a payload the client broke


def test_a_wording_never_seen_still_reads_as_a_missing_parameter_when_it_names_one() -> None:
    # an invented wording: only its structure (a negation beside the request's own parameter) is known
    body = orjson.dumps({"error": {"message": "The upstream engine rejected logitBias: not yet implemented here."}})
    terms = request_terms({"model": "m", "messages": [], "logit_bias": {"50256": -100}}, ["m"])
    assert refusal_kind(read_error(body), terms) is Kind.UNSUPPORTED


def test_the_model_id_sent_is_a_name_too() -> None:
    body = orjson.dumps({"error": {"message": "acme/wombat-7b is no longer served by this endpoint"}})
    assert refusal_kind(read_error(body), request_terms({"model": "x", "messages": []}, ["acme/wombat-7b"])) is (
        Kind.UNSUPPORTED
    )


def test_names_are_compared_in_every_case_and_spelling() -> None:
    assert normal_name("presencePenalty") == normal_name("presence_penalty") == normal_name("presence-penalty")
    terms = request_terms(
        {"model": "m", "messages": [{"role": "developer", "content": [{"type": "input_audio"}]}],
         "reasoning": {"effort": "low"}, "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {
             "type": "object", "additionalProperties": False}}}], "tool_choice": "required"},
        ["openrouter/acme/wombat-7b"],
    )
    for name in ("reasoningeffort", "effort", "developer", "inputaudio", "lookup", "additionalproperties", "required"):
        assert name in terms.names, name
    assert "type" not in terms.names and "messages" not in terms.names  # the request's substance is never evidence
    assert terms.models == ("openrouter/acme/wombat-7b", "wombat-7b") and terms.parts == {"inputaudio"}


# --- every envelope ------------------------------------------------------------------------------------------------


def test_read_error_walks_every_envelope() -> None:
    google = read_error(b'[{"error": {"code": 400, "message": "A.", "status": "INVALID_ARGUMENT", "details": ['
                        b'{"@type": "x", "reason": "API_KEY_INVALID"}]}}]')
    assert google.message == "a." and {"invalid argument", "api key invalid", "400"} <= set(google.codes)
    raw = read_error(orjson.dumps({"error": {"message": "Provider returned error", "code": 400, "metadata": {
        "raw": orjson.dumps({"error": {"message": "Inner words", "code": "context_length_exceeded"}}).decode()}}}))
    assert "inner words" in raw.message and "context length exceeded" in raw.codes
    mistral = read_error(b'{"object":"error","message":{"detail":[{"type":"extra_forbidden","loc":["body","top_k"],'
                         b'"msg":"Extra inputs are not permitted"}]}}')
    assert mistral.message == "extra inputs are not permitted: body.top_k" and mistral.fields == ("body.top_k",)
    assert read_error(b'{"base_resp": {"status_code": 1008, "status_msg": "insufficient balance"}}').message == (
        "insufficient balance"
    )
    assert read_error(b"<html>502 Bad Gateway</html>").message == "<html>502 bad gateway</html>"
    assert read_error(b'{"error": {"code": 400, "type": "x"}}').code == "400"


def test_google_retry_info_is_read_as_a_hint() -> None:
    body = orjson.dumps({"error": {"code": 429, "message": "Quota exceeded for metric.", "status": "RESOURCE_EXHAUSTED",
                                   "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "59s"}]}})
    verdict = classify_refusal(429, body, (), NOW)
    assert (verdict.retryable, verdict.cooldown, verdict.retry_after_s) == (True, Cooldown.OFFER, 59.0)


def test_an_account_refusal_inside_a_200_is_recognised_by_kind() -> None:
    assert is_account_failure("the provider answered 200 with an error: insufficient balance (1008)")
    assert is_account_failure("the provider answered 200 with an error: API key not valid. Please pass a valid API key.")
    assert not is_account_failure("the provider answered 200 with an error: Rate limit reached, please try again in 2s")
    assert not is_account_failure("the provider answered 200 with an error: upstream overloaded")


# --- the second opinion, and what every refusal of the request leaves the client ------------------------------------


def offer(slug: str, model: str = "gpt-4") -> Offer:
    return Offer(model, slug, f"{slug}/{model}", f"http://{slug}", "")


def test_the_second_opinion_goes_to_the_next_offer_of_another_provider() -> None:
    a, a2, b, c = offer("a"), offer("a", "gpt-4-alt"), offer("b"), offer("c")
    ranked = (a, a2, b, c)
    pick = second_opinion_offer(a, True, Preferences(), ranked, tried=1, max_attempts=3, enabled=True)
    assert pick == b  # a's other offer would say what a said


@pytest.mark.parametrize(
    ("asks", "prefs", "tried", "max_attempts", "enabled"),
    [
        (False, Preferences(), 1, 3, True),  # a known kind: no second opinion
        (True, Preferences(allow_fallbacks=False), 1, 3, True),
        (True, Preferences(), 3, 3, True),  # the cap on attempts holds
        (True, Preferences(), 1, 3, False),  # [proxy] second_opinion = false
    ],
)
def test_no_second_opinion_when_it_is_not_asked_or_not_allowed(
    asks: bool, prefs: Preferences, tried: int, max_attempts: int, enabled: bool
) -> None:
    ranked = (offer("a"), offer("b"))
    assert second_opinion_offer(ranked[0], asks, prefs, ranked, tried=tried, max_attempts=max_attempts,
                                enabled=enabled) is None


def test_no_second_opinion_without_another_provider() -> None:
    ranked = (offer("a"), offer("a", "gpt-4-alt"))
    assert second_opinion_offer(ranked[0], True, Preferences(), ranked, tried=1, max_attempts=3, enabled=True) is None


def test_the_second_opinion_outcome() -> None:
    assert opinion_outcome(None) == SERVED
    assert opinion_outcome(UpstreamStatus(400, retryable=False)) == REFUSED
    assert opinion_outcome(UpstreamStatus(503, retryable=True)) == FAILED
    assert opinion_outcome(UpstreamError("connect")) == FAILED


def test_refusals_of_the_request_itself() -> None:
    assert refuses_the_request(UpstreamStatus(400, retryable=True, kind="unsupported"))
    assert refuses_the_request(UpstreamStatus(413, retryable=True, kind="context_length"))
    assert refuses_the_request(UpstreamStatus(400, retryable=False, second_opinion=True))
    assert not refuses_the_request(UpstreamStatus(400, retryable=True, kind="rate_limited"))
    assert not refuses_the_request(UpstreamStatus(503, retryable=True))
    assert not refuses_the_request(UpstreamError("connect"))
