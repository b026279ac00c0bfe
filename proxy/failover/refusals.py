"""What a provider's error status means, read with its body: the table of refusal patterns. Pure.

A status alone is not enough: only some providers send `context_length_exceeded`; others send a
generic `invalid_request_error`, a bare number, a plain string `error`, or another envelope, and a
rate limit may come as 413 (Groq) or 400. `read_error` pulls the code, the type and the message out
of every envelope seen in the wild; `classify_refusal` matches them against `PATTERNS`, each pattern
with the provider wording it was taken from (recorded answers quoted in public bug trackers).

    kind                 status          what the proxy does
    insufficient_quota   any             next offer; the whole provider cools down (account_cooldown_s)
    401/402/403          that status     next offer; the whole provider cools down (account_cooldown_s)
    moderation           403             next offer; no cooldown, not counted against the offer
    rate_limited         400/413/429     next offer; the offer cools down when the provider says when
    over_rate_budget     400/413/429     next offer; no cooldown (this one request exceeds the per-minute
                                         budget: "Limit M, Requested N" with N > M; smaller ones fit)
    context_length       400/413/422     next offer with a larger (or unknown) context; else passed through
    unsupported          400/422         next offer (a parameter, tools or the model unknown here)
    499                  499             next offer; counted against the offer
    (none)               400/413/422     passed through unchanged: every provider would say the same
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from proxy.failover.classify import COOLDOWN_STATUSES, is_retryable_status, retry_after_seconds

ACCOUNT_STATUSES = frozenset({401, 402, 403})
BODY_READ_STATUSES = frozenset({400, 413, 422, 429})
PASSED_THROUGH = frozenset({400, 413, 422})
MESSAGE_LIMIT = 2000  # characters of a message worth matching


class Cooldown(StrEnum):
    NONE = ""
    OFFER = "offer"  # this offer, until the provider's Retry-After
    PROVIDER = "provider"  # every offer of the provider, for account_cooldown_s


@dataclass(frozen=True, slots=True)
class ErrorText:
    """What an error body says, lowercased: `code` and `type` as text (a number becomes its digits)."""

    code: str = ""
    type: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class Pattern:
    kind: str
    codes: frozenset[str]  # matched against the error's code and type
    phrases: tuple[str, ...]  # lowercase substrings of the message
    source: str  # the provider wording each phrase came from

    def matches(self, text: ErrorText) -> bool:
        return text.code in self.codes or text.type in self.codes or any(p in text.message for p in self.phrases)


ACCOUNT = Pattern(
    "insufficient_quota",
    frozenset({"insufficient_quota", "insufficient_credits", "insufficient_balance", "billing_hard_limit_reached"}),
    (
        "exceeded your current quota",
        "insufficient balance",
        "insufficient credits",
        "requires more credits",
        "more credits are required",
        "credit balance is too low",
    ),
    "OpenAI 429 `insufficient_quota` 'You exceeded your current quota, please check your plan and billing details.'; "
    "DeepSeek 402 'Insufficient Balance'; OpenRouter 402 'Insufficient credits. Add more using "
    "https://openrouter.ai/settings/credits', 'This request requires more credits, or fewer max_tokens', "
    "'More credits are required to run this request'; Anthropic 'Your credit balance is too low'",
)
RATE_LIMIT = Pattern(
    "rate_limited",
    frozenset({"rate_limit_exceeded", "rate_limit_error", "tokens", "too_many_requests"}),
    ("rate limit", "tokens per minute", "tokens per min", "requests per minute", "too many requests", "(tpm)", "(rpm)"),
    "Groq 413 `rate_limit_exceeded` type `tokens` 'Request too large for model ... on tokens per minute (TPM): "
    "Limit 6000, Requested 14810, please reduce your message size'; Groq 429 'Rate limit reached ... Limit 6000, "
    "Used 5034, Requested 1443. Please try again in 4.77s'; OpenAI 'Request too large for gpt-4o on tokens per min "
    "(TPM): Limit 30000, Requested 342389'",
)
CONTEXT = Pattern(
    "context_length",
    frozenset({"context_length_exceeded"}),
    (
        "maximum context length",
        "context length",
        "context window",
        "context limit",
        "prompt is too long",
        "input is too long",
        "`inputs` tokens + `max_new_tokens` must be",
        "exceeded model token limit",
        "reduce the length of the messages",
    ),
    "OpenAI/DeepSeek/vLLM 400 'This model's maximum context length is 131072 tokens. However, you requested "
    '131134 tokens\'; Fireworks 400 `"object":"error"` \'The prompt is too long: 264613, model maximum context '
    "length: 262141'; Anthropic-compatible 400 'prompt is too long: 203052 tokens > 200000 maximum', 'input length "
    "and max_tokens exceed context limit'; TGI/Together 422 'Input validation error: `inputs` tokens + "
    "`max_new_tokens` must be <= 8192'; Moonshot 'Your request exceeded model token limit: 262144'",
)
UNSUPPORTED = Pattern(
    "unsupported",
    frozenset({"unsupported_parameter", "unsupported_value", "model_not_found", "invalid_model"}),
    (
        "not supported",
        "does not support",
        "unsupported parameter",
        "no endpoints found",
        "is not a valid model id",
        "does not exist",
        "model not found",
        "unknown model",
        "extra inputs are not permitted",
    ),
    "OpenAI 400 `unsupported_parameter` \"Unsupported parameter: 'max_tokens' is not supported with this model\"; "
    "Ollama-compatible 400 'does not support tools'; OpenRouter 404 'No endpoints found that support tool use', "
    "400 'deepseek/deepseek-coder is not a valid model ID'; Groq 404 `model_not_found` 'The model `llama3.1-405b` "
    "does not exist or you do not have access to it'; vLLM 400 'Extra inputs are not permitted'",
)
MODERATION = Pattern(
    "moderation",
    frozenset({"moderation"}),
    ("flagged", "moderation"),
    "OpenRouter 403 when a model that requires moderation flags the input ('Your chosen model requires moderation "
    "and your input was flagged')",
)
PATTERNS = (ACCOUNT, RATE_LIMIT, CONTEXT, UNSUPPORTED, MODERATION)

OVER_BUDGET = re.compile(r"limit:?\s*(\d+)[^.]*?requested:?\s*(\d+)")
TRY_AGAIN = re.compile(r"try again in\s*(\d+(?:\.\d+)?)\s*(ms|s)\b")


@dataclass(frozen=True, slots=True)
class StatusVerdict:
    """What to do with one error status: its label, fail over or not, count it, cool what down."""

    kind: str  # "" when the status says it all (the label is then the status)
    retryable: bool
    counts: bool = True  # against the offer's health and circuit
    cooldown: Cooldown = Cooldown.NONE
    retry_after_s: float | None = None


def _text(value: Any) -> str:
    return str(value).lower()[:MESSAGE_LIMIT] if value is not None else ""


def _from_object(error: dict[str, Any]) -> ErrorText:
    inner = error.get("error")
    if isinstance(inner, dict):  # OpenRouter's doubly wrapped error, Anthropic's {"type": "error", "error": {...}}
        return _from_object(inner)
    message = error.get("message")
    if message is None:
        message = error.get("detail")
    if message is None and isinstance(inner, str):
        message = inner
    return ErrorText(_text(error.get("code")), _text(error.get("type")), _text(message))


def read_error(body: bytes) -> ErrorText:
    """The code, type and message of an error body, whatever its envelope: `{"error": {...}}`,
    `{"error": "text"}`, `{"object": "error", ...}` (vLLM, Fireworks), `{"type": "error", "error":
    {...}}` (Anthropic), `{"detail": "..."}` (FastAPI), or plain text."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ErrorText(message=body[:MESSAGE_LIMIT].decode("utf-8", "replace").lower())
    if isinstance(parsed, dict):
        return _from_object(parsed)
    return ErrorText(message=_text(parsed))


def is_account_failure(message: str) -> bool:
    """Does this error text say the provider account is out of money or quota? (any status, even a 200)"""
    return ACCOUNT.matches(ErrorText(message=message.lower()))


def over_rate_budget(message: str) -> bool:
    """ "Limit M ... Requested N" with N > M and nothing "Used": this one request can never fit."""
    found = OVER_BUDGET.search(message)
    return found is not None and "used" not in message and int(found.group(2)) > int(found.group(1))


def hinted_retry_s(message: str) -> float | None:
    """ "Please try again in 4.77s" / "in 20ms" (OpenAI, Groq), as seconds."""
    found = TRY_AGAIN.search(message)
    if found is None:
        return None
    value = float(found.group(1))
    return value / 1000 if found.group(2) == "ms" else value


def classify_refusal(status: int, body: bytes, headers: Iterable[tuple[str, str]], now: float) -> StatusVerdict:
    """The verdict on an error status from its code, type and message (see the table above)."""
    text = read_error(body) if status in BODY_READ_STATUSES or status in ACCOUNT_STATUSES else ErrorText()
    if ACCOUNT.matches(text):
        return StatusVerdict("" if status in ACCOUNT_STATUSES else ACCOUNT.kind, True, cooldown=Cooldown.PROVIDER)
    if status == 403 and MODERATION.matches(text):
        return StatusVerdict(MODERATION.kind, True, counts=False)
    if status in ACCOUNT_STATUSES:
        return StatusVerdict("", True, cooldown=Cooldown.PROVIDER)
    if status == 499:
        return StatusVerdict("", True)
    if status in BODY_READ_STATUSES:
        verdict = _by_body(status, text, headers, now)
        if verdict is not None:
            return verdict
    return _by_status(status, headers, now)


def _rate_limit(status: int, text: ErrorText, headers: Iterable[tuple[str, str]], now: float) -> StatusVerdict:
    if over_rate_budget(text.message):
        return StatusVerdict("over_rate_budget", True, counts=False)
    retry = retry_after_seconds(headers, now)
    retry = retry if retry is not None else hinted_retry_s(text.message)
    if status == 429:
        return StatusVerdict("", True, cooldown=Cooldown.OFFER, retry_after_s=retry)
    cooldown = Cooldown.OFFER if retry is not None else Cooldown.NONE
    return StatusVerdict("rate_limited", True, cooldown=cooldown, retry_after_s=retry)


def _by_body(status: int, text: ErrorText, headers: Iterable[tuple[str, str]], now: float) -> StatusVerdict | None:
    if RATE_LIMIT.matches(text):
        return _rate_limit(status, text, headers, now)
    if status == 429:
        return None
    if CONTEXT.matches(text):
        return StatusVerdict(CONTEXT.kind, True, counts=False)
    if UNSUPPORTED.matches(text):
        return StatusVerdict(UNSUPPORTED.kind, True, counts=False)
    return None


def _by_status(status: int, headers: Iterable[tuple[str, str]], now: float) -> StatusVerdict:
    retryable = is_retryable_status(status) and status not in PASSED_THROUGH
    if not retryable:
        return StatusVerdict("", False, counts=False)
    if status in COOLDOWN_STATUSES:
        return StatusVerdict("", True, cooldown=Cooldown.OFFER, retry_after_s=retry_after_seconds(headers, now))
    return StatusVerdict("", True)
