"""Tokens and cost of one answer, from its `usage` and the offer's prices. Pure.

A non-streaming answer carries `usage` in its body. A stream carries it in its final chunk when
asked with `stream_options.include_usage`: `proxy.upstream.sse.StreamWatch` keeps the last usage
object it saw while relaying, so the stream is never buffered for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.types import Offer
from proxy.upstream.sse import StreamWatch


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def cost(self, offer: Offer) -> float:
        return self.prompt_tokens * (offer.pricing_prompt or 0.0) + self.completion_tokens * (
            offer.pricing_completion or 0.0
        )


def usage_of(answer: Any) -> Usage | None:
    """The `usage` of a parsed answer (or stream chunk), when it is well formed."""
    if not isinstance(answer, dict):
        return None
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    if not isinstance(prompt, int) or not isinstance(completion, int) or prompt < 0 or completion < 0:
        return None
    return Usage(prompt, completion)


def stream_usage(watch: StreamWatch) -> Usage | None:
    """The usage a relayed stream reported (its last usage object), or None."""
    return usage_of({"usage": watch.usage}) if watch.usage is not None else None
