"""A Messages API stream translated into Chat Completions chunks as it comes. Pure.

`ChatFromMessages.feed(chunk)` frames the Messages events and returns the chat chunks they make:

- `message_start` -> a chunk with `delta: {"role": "assistant", "content": ""}`;
- a `text` block's text (`content_block_start` with text, `text_delta`) -> `content` deltas;
  `thinking_delta` -> `reasoning_content` deltas (DeepSeek's name, which the openai SDK keeps as an
  extra field); a `tool_use` block -> a `tool_calls` delta with its `id`, `name` and empty
  `arguments`, then its `input_json_delta`s as `arguments` pieces (tool calls numbered in order);
  `signature_delta`, `ping` and `content_block_stop` make nothing;
- `message_delta` -> a chunk with the `finish_reason` (`proxy.dialects.answers.finish_reason`);
- `message_stop` -> the usage chunk (`choices: []`, chat usage) when the client asked for it
  (`stream_options.include_usage`), then `data: [DONE]`;
- an `error` event -> `data: {"error": {...}}`, OpenAI's in-stream error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from proxy.dialects.answers import finish_reason
from proxy.dialects.envelopes import read_error
from proxy.dialects.usage_shapes import chat_usage
from proxy.errors import UpstreamError
from proxy.upstream.sse import SseEvent, SseFramer

DONE = b"data: [DONE]\n\n"


def _data(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def error_chunk(message: str, kind: str, code: str | None) -> bytes:
    """OpenAI's in-stream error, as the relay ends a broken chat stream."""
    return _data({"error": {"message": message, "type": kind, "code": code, "param": None}})


class ChatFromMessages:
    """One Messages stream's translation (see the module docstring)."""

    def __init__(self, include_usage: bool = False) -> None:
        self._framer = SseFramer()
        self._include_usage = include_usage
        self._id = ""
        self._model = ""
        self._created = int(time.time())
        self._usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # a tool_use block's index -> its tool call's index
        self._ended = False
        self._events: dict[Any, Callable[[dict[str, Any]], bytes]] = {
            "message_start": self._start,
            "content_block_start": self._block,
            "content_block_delta": self._delta,
            "message_delta": self._stop,
            "message_stop": lambda payload: self._end(),
        }

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._translate(item) for item in self._framer.feed(chunk))

    def finish(self, unterminated: bool) -> bytes:
        rest = b"".join(self._translate(item) for item in self._framer.close())
        return rest + (b"" if self._ended else self._end())

    def failed(self, error: UpstreamError) -> bytes:
        return error_chunk(error.message, "upstream_error", error.code)

    def _translate(self, item: SseEvent) -> bytes:
        if item.data is None or self._ended:
            return b""
        try:
            payload = orjson.loads(item.data)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(payload, dict):
            return b""
        if payload.get("type") == "error":
            self._ended = True
            error_kind, message = read_error(item.data)
            return error_chunk(message or "the provider reported an error", error_kind or "api_error", None)
        translate = self._events.get(payload.get("type"))
        return b"" if translate is None else translate(payload)

    def _stop(self, payload: dict[str, Any]) -> bytes:
        self._merge(payload.get("usage"))
        delta = payload.get("delta")
        return self._chunk({}, finish_reason(delta.get("stop_reason") if isinstance(delta, dict) else None))

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _data({"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                      "model": self._model, "choices": [choice]})  # fmt: skip

    def _start(self, payload: dict[str, Any]) -> bytes:
        message = payload.get("message")
        message = message if isinstance(message, dict) else {}
        self._id, self._model = str(message.get("id", "")), str(message.get("model", ""))
        self._merge(message.get("usage"))
        return self._chunk({"role": "assistant", "content": ""})

    def _block(self, payload: dict[str, Any]) -> bytes:
        block = payload.get("content_block")
        if not isinstance(block, dict):
            return b""
        if block.get("type") == "tool_use":
            position = self._tools.setdefault(payload.get("index", 0), len(self._tools))
            call = {"index": position, "id": block.get("id", ""), "type": "function",
                    "function": {"name": block.get("name", ""), "arguments": ""}}  # fmt: skip
            return self._chunk({"tool_calls": [call]})
        text = block.get("text")
        return self._chunk({"content": text}) if isinstance(text, str) and text else b""

    def _delta(self, payload: dict[str, Any]) -> bytes:
        delta = payload.get("delta")
        if not isinstance(delta, dict):
            return b""
        kind = delta.get("type")
        if kind == "text_delta":
            return self._chunk({"content": delta.get("text", "")})
        if kind == "thinking_delta":
            return self._chunk({"reasoning_content": delta.get("thinking", "")})
        position = self._tools.get(payload.get("index", 0))
        if kind == "input_json_delta" and position is not None:
            arguments = delta.get("partial_json", "")
            return self._chunk({"tool_calls": [{"index": position, "function": {"arguments": arguments}}]})
        return b""

    def _merge(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._usage.update((k, v) for k, v in usage.items() if v is not None)

    def _end(self) -> bytes:
        self._ended = True
        usage = b""
        if self._include_usage:
            usage = _data({"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                           "model": self._model, "choices": [], "usage": chat_usage(self._usage)})  # fmt: skip
        return usage + DONE
