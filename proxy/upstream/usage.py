"""Tokens and cost of one answer, from its `usage` and the offer's prices. Pure.

A non-streaming answer carries `usage` in its body. A stream carries it in its final chunk when
asked with `stream_options.include_usage` (the Responses API in `response.completed`): the relay's
watch (`proxy.upstream.sse.RelayWatch`) keeps the last usage object it saw while relaying, so the
stream is never buffered for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.types import Offer
from proxy.upstream.sse import RelayWatch


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def cost(self, offer: Offer) -> float:
        return self.prompt_tokens * (offer.pricing_prompt or 0.0) + self.completion_tokens * (
            offer.pricing_completion or 0.0
        )


def usage_of(answer: Any) -> Usage | None:
    """An answer's `usage`: chat's `prompt_tokens`/`completion_tokens`, or the Responses API's
    `input_tokens`/`output_tokens`; None when absent or not counts."""
    if not isinstance(answer, dict):
        return None
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        return None
    if "prompt_tokens" in usage or "input_tokens" not in usage:
        prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    else:
        prompt, completion = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
    if not isinstance(prompt, int) or not isinstance(completion, int) or prompt < 0 or completion < 0:
        return None
    return Usage(prompt, completion)


def stream_usage(watch: RelayWatch) -> Usage | None:
    """The usage a relayed stream reported (its last usage object), or None."""
    return usage_of({"usage": watch.usage}) if watch.usage is not None else None
