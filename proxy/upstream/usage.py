"""Tokens and cost of one answer, from its usage wherever the provider put it, and the offer's prices. Pure.

Usage is read once per answer, from the first place that holds it, in this order:

    where                                   who
    the answer's (or chunk's) `usage`       OpenAI and most compatible servers; a stream's final chunk when
                                            asked with `stream_options.include_usage`
    `x_groq.usage`                          Groq streams, in the finishing chunk
    a choice's `usage`                      Moonshot (Kimi) streams, in the finishing choice
    `usageMetadata`                         Google (Gemini) bodies

and counted in whichever names it uses: `prompt_tokens`/`completion_tokens` (OpenAI),
`input_tokens`/`output_tokens` (Responses API, Anthropic), `promptTokenCount`/`candidatesTokenCount`
(Google), `inputTokenCount`/`outputTokenCount` (Bedrock). The details priced apart are read where
each API puts them: cached prompt tokens from `prompt_tokens_details.cached_tokens` (OpenAI, part of
`prompt_tokens`), `input_tokens_details.cached_tokens` (Responses API) or `cachedContentTokenCount`
(Google); reasoning tokens from `completion_tokens_details.reasoning_tokens` (OpenAI, part of
`completion_tokens`), `output_tokens_details.reasoning_tokens` or `thoughtsTokenCount` (Google). An
Anthropic usage object (`cache_read_input_tokens`, `cache_creation_input_tokens` beside
`input_tokens`) counts its prompt in three parts that do not overlap: they are summed, the cache
reads being its cached prompt (as `proxy.dialects.usage_shapes.chat_usage` does).
A stream's usage is the last usage object
its relay watch saw (`proxy.upstream.sse.RelayWatch`: the stream is never buffered for it), so
usage repeated in two places of one answer is counted once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.upstream.sse import RelayWatch

COUNT_NAMES = (
    ("prompt_tokens", "completion_tokens"),
    ("input_tokens", "output_tokens"),
    ("promptTokenCount", "candidatesTokenCount"),
    ("inputTokenCount", "outputTokenCount"),
)


# (details object, count) pairs of cached prompt and of reasoning tokens, in the order they are looked for
CACHED_NAMES = (("prompt_tokens_details", "cached_tokens"), ("input_tokens_details", "cached_tokens"))
ANTHROPIC_CACHE = frozenset({"cache_read_input_tokens", "cache_creation_input_tokens"})
REASONING_NAMES = (("completion_tokens_details", "reasoning_tokens"), ("output_tokens_details", "reasoning_tokens"))


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one answer. `cached_prompt_tokens` are part of `prompt_tokens` and
    `reasoning_tokens` part of `completion_tokens` (OpenAI's convention); `estimated`: counted by the
    proxy from the relayed text, the provider reported none."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False


def _object(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) and value else None


def usage_object(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """The usage object of an answer or a stream chunk, wherever the provider put it (see above)."""
    found = _object(payload.get("usage"))
    if found is None and "x_groq" in payload:
        vendor = payload["x_groq"]
        found = _object(vendor.get("usage")) if isinstance(vendor, dict) else None
    if found is None and "choices" in payload:
        found = _choice_usage(payload["choices"])
    if found is None and "usageMetadata" in payload:
        found = _object(payload["usageMetadata"])
    return found


def _choice_usage(choices: Any) -> dict[str, Any] | None:
    if not isinstance(choices, list):
        return None
    for choice in choices:
        found = _object(choice.get("usage")) if isinstance(choice, dict) else None
        if found is not None:
            return found
    return None


def usage_of(answer: Any) -> Usage | None:
    """An answer's usage (see the module docstring); None when absent or not counts."""
    if not isinstance(answer, dict):
        return None
    usage = answer.get("usage")  # where nearly every provider puts it: no search
    if not isinstance(usage, dict) or not usage:
        usage = usage_object(answer)
    return counts_of(usage) if usage is not None else None


def counts_of(usage: Mapping[str, Any]) -> Usage | None:
    """The tokens of one usage object, in whichever names it uses (None: counts that are not counts)."""
    for prompt_name, completion_name in COUNT_NAMES:
        if prompt_name in usage or completion_name in usage:
            prompt, completion = usage.get(prompt_name, 0), usage.get(completion_name, 0)
            if not isinstance(prompt, int) or not isinstance(completion, int) or prompt < 0 or completion < 0:
                return None
            if prompt_name == "promptTokenCount":  # Google counts thoughts apart from the candidates
                cached, reasoning = _count(usage, "cachedContentTokenCount"), _count(usage, "thoughtsTokenCount")
                completion += reasoning
            elif prompt_name == "input_tokens" and ANTHROPIC_CACHE & usage.keys():  # Anthropic's three parts
                cached = _count(usage, "cache_read_input_tokens")
                prompt += cached + _count(usage, "cache_creation_input_tokens")
                reasoning = 0
            else:
                cached, reasoning = _detail(usage, CACHED_NAMES), _detail(usage, REASONING_NAMES)
            return Usage(prompt, completion, min(cached, prompt), min(reasoning, completion))
    return Usage(0, 0)


def _count(usage: Mapping[str, Any], name: str) -> int:
    value = usage.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _detail(usage: Mapping[str, Any], names: tuple[tuple[str, str], ...]) -> int:
    for outer, inner in names:
        details = usage.get(outer)
        if isinstance(details, dict):  # parsed JSON: a dict, checked without the ABC machinery
            return _count(details, inner)
    return 0


def stream_usage(watch: RelayWatch) -> Usage | None:
    """The usage a relayed stream reported (its last usage object), or None."""
    return counts_of(watch.usage) if watch.usage is not None else None


CHARS_PER_TOKEN = 4  # OpenAI's rule of thumb for English text (https://platform.openai.com/tokenizer)


def estimated_usage(prompt_characters: int, completion_bytes: int) -> Usage:
    """Usage counted by the proxy when a stream reported none: the prompt's text characters and the
    relayed completion's text bytes (`proxy.upstream.usage_stream.text_bytes`), each divided by
    `CHARS_PER_TOKEN` and rounded up. No tokenizer is in the proxy's dependencies, and the models'
    tokenizers differ anyway: it undercounts code and non-Latin scripts, and is marked `estimated`."""
    return Usage(-(-prompt_characters // CHARS_PER_TOKEN), -(-completion_bytes // CHARS_PER_TOKEN), estimated=True)
