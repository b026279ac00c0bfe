"""A usage object of one API in the other's shape, and the `Usage` of a Messages answer. Pure.

Anthropic counts the prompt in three parts that do not overlap: `input_tokens` (only the tokens
after the last cache breakpoint), `cache_read_input_tokens` and `cache_creation_input_tokens`
(https://platform.claude.com/docs/en/api/rate-limits: "total_input_tokens =
cache_read_input_tokens + cache_creation_input_tokens + input_tokens"). OpenAI's `prompt_tokens`
is the whole prompt, cached tokens included (`prompt_tokens_details.cached_tokens`); OpenRouter
adds `prompt_tokens_details.cache_write_tokens` for the tokens written to the cache
(https://openrouter.ai/docs/use-cases/usage-accounting). So:

    prompt_tokens     = input_tokens + cache_read_input_tokens + cache_creation_input_tokens
    cached_tokens     = cache_read_input_tokens
    cache_write_tokens = cache_creation_input_tokens
    completion_tokens = output_tokens

The request record keeps usage as chat reads it (`proxy.upstream.usage.usage_of`), so a Messages
answer's usage is read through `chat_usage`: every reader of the record (metrics, cost, the usage
record) sees one shape whichever API the client or the offer spoke.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.upstream.usage import Usage, usage_of


def _count(usage: Mapping[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def chat_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Anthropic's usage as OpenAI's chat usage (see the module docstring)."""
    read = _count(usage, "cache_read_input_tokens")
    written = _count(usage, "cache_creation_input_tokens")
    prompt = _count(usage, "input_tokens") + read + written
    completion = _count(usage, "output_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": written},
    }


def messages_usage(usage: Mapping[str, Any]) -> dict[str, int]:
    """OpenAI's chat usage as Anthropic's (see the module docstring)."""
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, Mapping) else {}
    read = _count(details, "cached_tokens")
    written = _count(details, "cache_write_tokens")
    prompt = _count(usage, "prompt_tokens")
    return {
        "input_tokens": max(0, prompt - read - written),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": _count(usage, "completion_tokens"),
    }


def answer_usage(answer: Any) -> Usage | None:
    """The `Usage` of a Messages answer (or count_tokens's `{"input_tokens": N}`), as chat reads it."""
    if not isinstance(answer, dict):
        return None
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        return None
    return usage_of({"usage": chat_usage(usage)})
