"""A Chat Completions stream translated into Messages API events as it comes. Pure.

`MessagesFromChat.feed(chunk)` frames the chat chunks (`proxy.upstream.sse.SseFramer`) and returns
the Messages events they make, in order (https://platform.claude.com/docs/en/build-with-claude/streaming):

- the first chunk -> `message_start` (a message with empty `content`; its usage is known only at the
  end, so `message_start` says 0 and the final `message_delta` carries the counts, as the official
  SDKs read them: a `message_delta`'s usage replaces the earlier one);
- reasoning (`reasoning_content` / `reasoning`) -> a `thinking` block with `thinking_delta`s;
  `content` -> a `text` block with `text_delta`s; each tool call (by its `index`, or a new `id`) ->
  a `tool_use` block (`id`, `name`, `input: {}`) with its `arguments` as `input_json_delta`s;
  a new block closes the open one (`content_block_stop`);
- `finish_reason` -> the stop reason (`proxy.dialects.answers.stop_reason`); a usage chunk -> the
  counts (`proxy.dialects.usage_shapes.messages_usage`);
- `[DONE]` -> `content_block_stop` of the open block, `message_delta` (stop reason, usage) and
  `message_stop`; an error chunk (`{"error": ...}`) -> an `error` event.

Only the first choice is read (a Messages answer has one; `n` above 1 is not translated).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from proxy.dialects.answers import reasoning_of, stop_reason
from proxy.dialects.anthropic_verdict import event
from proxy.dialects.envelopes import error_event, read_error
from proxy.dialects.relaying import MESSAGE_STOP, STREAM_ERROR
from proxy.dialects.usage_shapes import messages_usage
from proxy.errors import UpstreamError
from proxy.upstream.sse import SseEvent, SseFramer, is_done

TEXT, THINKING = "text", "thinking"
EMPTY_BLOCKS = {TEXT: {"type": "text", "text": ""}, THINKING: {"type": "thinking", "thinking": "", "signature": ""}}
DELTAS = {TEXT: ("text_delta", "text"), THINKING: ("thinking_delta", "thinking")}


class MessagesFromChat:
    """One chat stream's translation (see the module docstring); `stops` are the request's
    `stop_sequences`, to tell a `stop_sequence` stop from an `end_turn`."""

    def __init__(self, stops: Sequence[str] = ()) -> None:
        self._framer = SseFramer()
        self._stops = tuple(stops)
        self._started = False
        self._ended = False
        self._open: tuple[str, int] | None = None  # the open block: (its key, its index)
        self._tools: dict[int, tuple[int, str]] = {}  # a tool call's chat index -> (block index, id)
        self._next = 0  # the index of the next block
        self._stop: tuple[str, str | None] = ("end_turn", None)
        self._usage: dict[str, Any] = {}

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._translate(item) for item in self._framer.feed(chunk))

    def finish(self, unterminated: bool) -> bytes:
        rest = b"".join(self._translate(item) for item in self._framer.close())
        return rest + (b"" if self._ended else self._end())

    def failed(self, error: UpstreamError) -> bytes:
        return error_event(STREAM_ERROR, error.message)

    def _translate(self, item: SseEvent) -> bytes:
        if item.data is None or self._ended:
            return b""
        if is_done(item.data):
            return self._end()
        try:
            payload = orjson.loads(item.data)
        except orjson.JSONDecodeError:
            return b""  # not a chunk: nothing a Messages client could read
        if not isinstance(payload, dict):
            return b""
        if "error" in payload:
            self._ended = True
            kind, message = read_error(item.data)
            return error_event(kind or STREAM_ERROR, message or "the provider reported an error")
        out = [] if self._started else [self._start(payload)]
        self._started = True
        if isinstance(payload.get("usage"), dict):
            self._usage = payload["usage"]
        choices = payload.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        if choice is not None:
            out.append(self._choice(choice))
        return b"".join(out)

    def _start(self, payload: dict[str, Any]) -> bytes:
        message: dict[str, Any] = {
            "id": str(payload.get("id", "")), "type": "message", "role": "assistant",
            "model": str(payload.get("model", "")), "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }  # fmt: skip
        return event("message_start", {"type": "message_start", "message": message})

    def _choice(self, choice: dict[str, Any]) -> bytes:
        out: list[bytes] = []
        delta = choice.get("delta")
        if isinstance(delta, dict):
            reasoning = reasoning_of(delta)
            if reasoning:
                out.append(self._text(THINKING, reasoning))
            if isinstance(delta.get("content"), str) and delta["content"]:
                out.append(self._text(TEXT, delta["content"]))
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    out.append(self._tool(call))
        if choice.get("finish_reason") is not None:
            self._stop = stop_reason(choice, self._stops)
        return b"".join(out)

    def _text(self, key: str, text: str) -> bytes:
        opened = self._switch(key, EMPTY_BLOCKS[key])
        kind, field = DELTAS[key]
        assert self._open is not None
        body = {"type": "content_block_delta", "index": self._open[1], "delta": {"type": kind, field: text}}
        return opened + event("content_block_delta", body)

    def _tool(self, call: dict[str, Any]) -> bytes:
        position = call.get("index", 0)
        position = position if isinstance(position, int) else 0
        ident = call.get("id")
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        known = self._tools.get(position)
        opened = b""
        if known is None or (isinstance(ident, str) and ident and ident != known[1]):
            block = {"type": "tool_use", "id": ident or "", "name": function.get("name", ""), "input": {}}
            opened = self._switch(f"tool:{position}:{ident}", block)
            assert self._open is not None
            known = self._tools[position] = (self._open[1], ident or "")
        arguments = function.get("arguments")
        if not isinstance(arguments, str) or not arguments:
            return opened
        body = {"type": "content_block_delta", "index": known[0],
                "delta": {"type": "input_json_delta", "partial_json": arguments}}  # fmt: skip
        return opened + event("content_block_delta", body)

    def _switch(self, key: str, block: dict[str, Any]) -> bytes:
        """Open the block `key` (closing the open one) unless it is the open one."""
        if self._open is not None and self._open[0] == key:
            return b""
        closed = self._close()
        self._open = (key, self._next)
        self._next += 1
        return closed + event("content_block_start", {"type": "content_block_start", "index": self._open[1],
                                                      "content_block": block})  # fmt: skip

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open = self._open[1], None
        return event("content_block_stop", {"type": "content_block_stop", "index": index})

    def _end(self) -> bytes:
        self._ended = True
        start = b"" if self._started else self._start({})
        self._started = True
        reason, sequence = self._stop
        delta = {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": sequence},
                 "usage": messages_usage(self._usage)}  # fmt: skip
        return start + self._close() + event("message_delta", delta) + MESSAGE_STOP
