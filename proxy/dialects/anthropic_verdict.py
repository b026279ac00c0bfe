"""What an Anthropic-speaking offer's answer says: an answer, nothing yet, a failure, the end. Pure.

A Messages stream (https://platform.claude.com/docs/en/build-with-claude/streaming) is named events:
`message_start` (a message with empty `content`), then per content block `content_block_start`,
`content_block_delta`s (`text_delta`, `input_json_delta`, `thinking_delta`, `signature_delta`) and
`content_block_stop`, then `message_delta` (`stop_reason`, cumulative `usage`) and `message_stop`;
`ping` events anywhere, and an `error` event (`overloaded_error`, `api_error`) instead of the rest.

- Before commit, `messages_output(name, payload)` is the endpoint's output predicate
  (`proxy.failover.judge.verdict.first_event_verdict` has already failed an `error` event): `ping`, a
  `message_start` without content, an empty text or thinking block's start hold the commit; text,
  thinking, a tool call's start, a stop reason commit; `message_stop` before any output is no answer.
- After commit, `MessagesStreamWatch` (a `proxy.upstream.sse.RelayWatch`) follows the stream as the
  relay sends it: `done` at `message_stop`, `provider_error` at an `error` event, `complete` once a
  `message_delta` gave the stop reason, `usage` from `message_start` and `message_delta` (as chat
  usage: `proxy.dialects.usage_shapes`). `ping` events are keep-alives, not progress.
- `is_message` and `has_input_tokens` are the answer checks of a 200 JSON body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from proxy.dialects.usage_shapes import chat_usage
from proxy.errors import EmptyAnswer
from proxy.upstream.sse import SseEvent, SseFramer

WATCHED = frozenset({b"message_start", b"message_delta", b"message_stop", b"error"})
PING = b"ping"
OUTPUT_DELTAS = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}
OUTPUT_BLOCKS = frozenset({"tool_use", "server_tool_use", "redacted_thinking"})


def event(name: str, payload: Mapping[str, Any]) -> bytes:
    """One named event of a Messages stream, as bytes."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def messages_output(name: bytes | None, payload: Mapping[str, Any]) -> bool:
    """Does this event of a Messages stream carry output (see the module docstring)?"""
    kind = payload.get("type")
    if kind == "content_block_delta":
        delta = payload.get("delta")
        if not isinstance(delta, dict):
            return False
        field = OUTPUT_DELTAS.get(delta.get("type", ""))
        return field is None or bool(delta.get(field)) or delta.get("type") == "input_json_delta"
    if kind == "content_block_start":
        block = payload.get("content_block")
        return isinstance(block, dict) and (block.get("type") in OUTPUT_BLOCKS or bool(block.get("text")))
    if kind == "message_delta":
        delta = payload.get("delta")
        return isinstance(delta, dict) and delta.get("stop_reason") is not None
    if kind == "message_start":
        message = payload.get("message")
        return isinstance(message, dict) and bool(message.get("content"))
    if kind == "message_stop":
        raise EmptyAnswer("the provider's stream ended before any output")
    return False


def is_message(body: Mapping[str, Any]) -> bool:
    """A Messages answer: a `message` with a `content` list (empty when the model said nothing)."""
    return body.get("type") == "message" and isinstance(body.get("content"), list)


def has_input_tokens(body: Mapping[str, Any]) -> bool:
    """A count_tokens answer: `{"input_tokens": N}`."""
    count = body.get("input_tokens")
    return isinstance(count, int) and not isinstance(count, bool) and count >= 0


class MessagesStreamWatch:
    """After commit, fed every relayed chunk of a Messages stream (see the module docstring)."""

    __slots__ = ("_framer", "_open_at_end", "_stopped", "_usage", "done", "finish_reason", "provider_error")

    def __init__(self) -> None:
        self._framer = SseFramer()
        self._usage: dict[str, Any] | None = None
        self._stopped = False
        self.finish_reason: str | None = None  # the `stop_reason` of its `message_delta`
        self._open_at_end = False
        self.done = False
        self.provider_error = False

    @property
    def complete(self) -> bool:
        """The stream gave its stop reason (only its `message_stop` may be missing)."""
        return self._stopped

    @property
    def unterminated(self) -> bool:
        return self._open_at_end or bool(self._framer.head(1).strip())

    @property
    def usage(self) -> dict[str, Any] | None:
        return None if self._usage is None else chat_usage(self._usage)

    def feed(self, chunk: bytes) -> bool:
        """Take one relayed chunk; True when it carried a data event other than a `ping`."""
        progress = False
        for item in self._framer.feed(chunk):
            if item.data is None or item.name == PING:
                continue
            progress = True
            if not self.done:
                self._watch(item)
        return progress or b"data:" in self._framer.head(64)

    def _watch(self, item: SseEvent) -> None:
        name, data = item.name, item.data
        assert data is not None
        if name is not None and name not in WATCHED:
            return
        if name is None and b'"message_' not in data and b'"error"' not in data:
            return  # a provider that names no events: only the few that matter are parsed
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return  # not ours to judge after commit: relayed as it came
        if isinstance(payload, dict):
            self._event(payload)

    def _event(self, payload: dict[str, Any]) -> None:
        kind = payload.get("type")
        if kind == "message_start":
            message = payload.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            self._merge(usage)
        elif kind == "message_delta":
            delta = payload.get("delta")
            reason = delta.get("stop_reason") if isinstance(delta, dict) else None
            self._stopped |= reason is not None
            if isinstance(reason, str):
                self.finish_reason = reason
            self._merge(payload.get("usage"))
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            self.provider_error = True

    def _merge(self, usage: Any) -> None:
        """A `message_delta`'s counts are cumulative: each one given replaces the earlier one."""
        if isinstance(usage, dict):
            merged = dict(self._usage or {})
            merged.update((k, v) for k, v in usage.items() if v is not None)
            self._usage = merged

    def close(self) -> None:
        """The body ended: an unterminated last event is judged as if its blank line had come."""
        rest = self._framer.close()
        self._open_at_end = bool(rest)
        for item in rest:
            if item.data is not None and not self.done:
                self._watch(item)
