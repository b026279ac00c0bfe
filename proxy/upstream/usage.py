"""Tokens and cost of one answer, from its `usage` and the offer's prices. Pure.

For a stream, the usage comes from the last event that carries one (providers send it in the final
chunk when asked with `stream_options.include_usage`); `UsageTail` keeps just enough of the stream's
end to find it, without buffering the stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from proxy.types import Offer

TAIL_BYTES = 8192


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


class UsageTail:
    """The end of a stream, bounded, and whether it ended with `data: [DONE]`."""

    __slots__ = ("tail",)

    def __init__(self) -> None:
        self.tail = b""

    def feed(self, chunk: bytes) -> None:
        tail = self.tail + chunk
        self.tail = tail[-TAIL_BYTES:] if len(tail) > TAIL_BYTES else tail

    @property
    def done(self) -> bool:
        return b"data: [DONE]" in self.tail or b"data:[DONE]" in self.tail

    def usage(self) -> Usage | None:
        for line in reversed(self.tail.split(b"\n")):
            if b'"usage"' in line and line.startswith(b"data:"):
                try:
                    found = usage_of(orjson.loads(line[5:]))
                except orjson.JSONDecodeError:
                    continue
                if found is not None:
                    return found
        return None
