"""Each rule of the 4xx table (`proxy.failover.judge.refusals`), each with a provider's real error text."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proxy.failover.judge.error_text import read_error
from proxy.failover.judge.refusals import Cooldown, StatusVerdict, classify_refusal

NOW = 1_700_000_000.0


def body(value: Any) -> bytes:
    return value if isinstance(value, bytes) else orjson.dumps(value)


def verdict(status: int, value: Any, headers: tuple[tuple[str, str], ...] = ()) -> StatusVerdict:
    return classify_refusal(status, body(value), headers, NOW)


GROQ_413 = {
    "error": {
        "message": "Request too large for model `llama-3.3-70b-versatile` in organization `org_01jp8byqwpfx9sp1m0dbhb6a1e`"
        " service tier `on_demand` on tokens per minute (TPM): Limit 6000, Requested 14810, please reduce your message"
        " size and try again. Visit https://console.groq.com/docs/rate-limits for more information.",
        "type": "tokens",
        "code": "rate_limit_exceeded",
    }
}
GROQ_429 = {
    "error": {
        "message": "Rate limit reached for model `llama-3.1-8b-instant` in organization `org_01j5b4pz9jff492fq686vypsx6`"
        " service tier `on_demand` on tokens per minute (TPM): Limit 6000, Used 5034, Requested 1443. Please try again"
        " in 4.77s. Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing",
        "type": "tokens",
        "code": "rate_limit_exceeded",
    }
}


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        # OpenAI / DeepSeek (code is the generic invalid_request_error)
        (400, {"error": {"message": "This model's maximum context length is 131072 tokens. However, you requested"
                                    " 131134 tokens (122942 in the messages, 8192 in the completion). Please reduce"
                                    " the length of the messages or completion.", "type": "invalid_request_error",
                         "param": None, "code": "invalid_request_error"}}, "context_length"),
        # OpenAI with the specific code
        (400, {"error": {"message": "too long", "type": "invalid_request_error", "code": "context_length_exceeded"}},
         "context_length"),
        # Fireworks: vLLM-style envelope
        (400, {"object": "error", "type": "invalid_request_error", "code": "invalid_request_error",
               "message": "The prompt is too long: 264613, model maximum context length: 262141"}, "context_length"),
        # Anthropic-compatible servers
        (400, {"type": "error", "error": {"type": "invalid_request_error",
                                          "message": "prompt is too long: 203052 tokens > 200000 maximum"}},
         "context_length"),
        (400, {"type": "error", "error": {"type": "invalid_request_error", "message": "input length and max_tokens"
                                          " exceed context limit: 198981 + 21333 > 200000, decrease input length or"
                                          " max_tokens and try again"}}, "context_length"),
        # TGI (Together's older stack, Hugging Face endpoints): a plain string error, 422
        (422, {"error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 8192. Given: 6204"
                        " `inputs` tokens and 2047 `max_new_tokens`", "error_type": "validation"}, "context_length"),
        # Moonshot (Kimi)
        (400, {"error": {"message": "Invalid request: Your request exceeded model token limit: 262144 (requested:"
                                    " 275363)", "type": "invalid_request_error"}}, "context_length"),
        # OpenAI: a parameter this model does not take
        (400, {"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use"
                                    " 'max_completion_tokens' instead.", "type": "invalid_request_error",
                         "param": "max_tokens", "code": "unsupported_parameter"}}, "unsupported"),
        # Ollama-compatible servers: tools
        (400, {"error": "hf.co/empower-dev/llama3-empower-functions-small-gguf-v1.1 does not support tools"},
         "unsupported"),
        # OpenRouter: a model it does not know
        (400, {"error": {"message": "deepseek/deepseek-coder is not a valid model ID", "code": 400}}, "unsupported"),
        # vLLM: an unknown request field (pydantic)
        (400, {"object": "error", "message": "[{'type': 'extra_forbidden', 'loc': ('body', 'top_k_x'), 'msg': 'Extra"
                                             " inputs are not permitted'}]", "type": "BadRequestError", "code": 400},
         "unsupported"),
    ],
)
def test_offer_specific_refusals_fail_over_without_counting(status: int, error: Any, kind: str) -> None:
    result = verdict(status, error)
    assert (result.kind, result.retryable, result.counts, result.cooldown) == (kind, True, False, Cooldown.NONE)


def test_groq_413_per_request_over_the_minute_budget_fails_over_without_cooldown() -> None:
    result = verdict(413, GROQ_413, (("retry-after", "7"),))
    assert (result.kind, result.retryable, result.counts, result.cooldown) == ("over_rate_budget", True, False, "")


def test_openai_request_too_large_for_tpm_is_over_budget_even_as_429() -> None:
    text = {"error": {"message": "Request too large for gpt-4o on tokens per min (TPM): Limit 30000, Requested 342389."
                                 " The input or output tokens must be reduced in order to run successfully.",
                      "type": "tokens", "code": "rate_limit_exceeded"}}
    assert verdict(429, text).kind == "over_rate_budget"


def test_a_rate_limit_as_400_with_a_retry_hint_cools_the_offer() -> None:
    result = verdict(400, GROQ_429)
    assert (result.kind, result.cooldown, result.retry_after_s) == ("rate_limited", Cooldown.OFFER, 4.77)
    with_header = verdict(413, {"error": {"message": "rate limit exceeded", "code": "rate_limit_exceeded"}},
                          (("retry-after-ms", "1500"),))
    assert (with_header.kind, with_header.cooldown, with_header.retry_after_s) == ("rate_limited", "offer", 1.5)


def test_a_rate_limit_as_413_that_says_not_when_fails_over_without_cooldown() -> None:
    result = verdict(413, {"error": {"message": "Too many requests", "code": "rate_limit_exceeded"}})
    assert (result.kind, result.retryable, result.cooldown) == ("rate_limited", True, Cooldown.NONE)


def test_a_429_rate_limit_keeps_its_status_label_and_cools_the_offer() -> None:
    result = verdict(429, GROQ_429)
    assert (result.kind, result.cooldown, result.retry_after_s) == ("", Cooldown.OFFER, 4.77)


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (429, {"error": {"message": "You exceeded your current quota, please check your plan and billing details.",
                         "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}},
         "insufficient_quota"),
        (400, {"error": {"message": "Insufficient Balance", "type": "unknown_error", "param": None,
                         "code": "invalid_request_error"}}, "insufficient_quota"),  # DeepSeek, as a 400
        (402, {"error": {"message": "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
                         "code": 402}}, ""),  # OpenRouter
        (402, b"Insufficient Balance", ""),  # DeepSeek, plain text
        (401, {"error": {"message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key"}}, ""),
        (403, {"error": {"message": "Forbidden"}}, ""),
    ],
)
def test_account_failures_cool_the_whole_provider(status: int, error: Any, kind: str) -> None:
    result = verdict(status, error)
    assert (result.kind, result.retryable, result.counts, result.cooldown) == (kind, True, True, Cooldown.PROVIDER)


def test_a_moderation_403_fails_over_without_cooling_the_provider() -> None:
    text = {"error": {"message": "openai/gpt-4o requires moderation on OpenRouter. Your input was flagged for"
                                 " \"harassment\".", "code": 403, "metadata": {"reasons": ["harassment"]}}}
    result = verdict(403, text)
    assert (result.kind, result.retryable, result.counts, result.cooldown) == ("moderation", True, False, "")


def test_499_fails_over_and_counts() -> None:
    assert verdict(499, {"error": {"message": "Client Closed Request"}}) == StatusVerdict("", True)


@pytest.mark.parametrize("status", [400, 413, 422])
def test_other_client_mistakes_pass_through(status: int) -> None:
    text = {"error": {"message": "'messages' is a required property", "type": "invalid_request_error", "code": None}}
    assert verdict(status, text).retryable is False


@pytest.mark.parametrize(("status", "cooldown"), [(500, ""), (503, "offer"), (404, ""), (529, "offer")])
def test_statuses_without_a_body_rule_keep_their_meaning(status: int, cooldown: str) -> None:
    result = verdict(status, {"error": {"message": "The model `x` does not exist", "code": "model_not_found"}})
    assert (result.kind, result.retryable, result.cooldown) == ("", True, cooldown)


def test_read_error_understands_every_envelope() -> None:
    assert read_error(b'{"error": {"error": {"message": "More credits are required", "code": 402}}}').message == (
        "more credits are required"
    )
    assert read_error(b'{"detail": "Not Found"}').message == "not found"
    assert read_error(b"upstream connect error").message == "upstream connect error"
    assert read_error(b'{"error": {"code": 400, "type": "x"}}').code == "400"
