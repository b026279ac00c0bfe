"""A whole (non-streaming) answer of one API as the other's, and the stop reasons between them. Pure.

Chat -> Messages (`messages_answer`): a choice's reasoning (`reasoning_content`, DeepSeek's and
vLLM's name, or OpenRouter's `reasoning`) -> a `thinking` block (with an empty `signature`: no
Anthropic model signed it), its `content` -> a `text` block, its `tool_calls` -> `tool_use` blocks
(`arguments` parsed; arguments that are not a JSON object become `{}`), `finish_reason` ->
`stop_reason`, `usage` -> Anthropic's usage (`proxy.dialects.usage_shapes`).

Messages -> Chat (`chat_answer`): text blocks -> `content`, `tool_use` blocks -> `tool_calls`,
`thinking` blocks -> `reasoning_content`, `stop_reason` -> `finish_reason`, usage -> chat usage.

Stop reasons (https://docs.claude.com/en/api/messages: `end_turn`, `max_tokens`, `stop_sequence`,
`tool_use`, `pause_turn`, `refusal`; OpenAI: `stop`, `length`, `tool_calls`, `content_filter`,
`function_call`): a chat `stop` is a `stop_sequence` only when the provider said which sequence
matched (vLLM's `stop_reason` on the choice, a string among the request's `stop_sequences`);
otherwise `end_turn`, since a Chat answer does not tell the two apart.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from proxy.dialects.usage_shapes import chat_usage, messages_usage

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}  # fmt: skip
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "pause_turn": "stop", "refusal": "content_filter"}  # fmt: skip


def stop_reason(choice: Mapping[str, Any], stops: Sequence[str]) -> tuple[str, str | None]:
    """(`stop_reason`, `stop_sequence`) of a finished chat choice."""
    finish = choice.get("finish_reason")
    matched = choice.get("stop_reason")
    if finish == "stop" and isinstance(matched, str) and matched in stops:
        return "stop_sequence", matched
    return STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn", None


def finish_reason(stop: Any) -> str:
    return FINISH_REASONS.get(stop, "stop") if isinstance(stop, str) else "stop"


def reasoning_of(message: Mapping[str, Any]) -> str:
    """A chat message's (or delta's) reasoning text, under either provider's name."""
    for field in ("reasoning_content", "reasoning"):
        value = message.get(field)
        if isinstance(value, str) and value:
            return value
    return ""


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's `arguments` (JSON text) as the `input` object a `tool_use` block must hold."""
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) and arguments.strip() else {}
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def messages_answer(answer: Mapping[str, Any], stops: Sequence[str] = ()) -> dict[str, Any]:
    """A chat completion (judged: it has a choice with a message) as a Messages answer."""
    choice = next(c for c in answer["choices"] if isinstance(c, dict) and isinstance(c.get("message"), dict))
    message = choice["message"]
    content: list[dict[str, Any]] = []
    reasoning = reasoning_of(message)
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    if isinstance(message.get("content"), str) and message["content"]:
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or ():
        function = call.get("function", {}) if isinstance(call, dict) else {}
        content.append({"type": "tool_use", "id": call.get("id", ""), "name": function.get("name", ""),
                        "input": tool_input(function.get("arguments"))})  # fmt: skip
    reason, sequence = stop_reason(choice, stops)
    usage = answer.get("usage")
    return {
        "id": str(answer.get("id", "")),
        "type": "message",
        "role": "assistant",
        "model": str(answer.get("model", "")),
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": messages_usage(usage if isinstance(usage, dict) else {}),
    }


def chat_answer(answer: Mapping[str, Any]) -> dict[str, Any]:
    """A Messages answer (judged: a `message` with a `content` list) as a chat completion."""
    blocks = [b for b in answer["content"] if isinstance(b, dict)]
    text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    calls = [
        {"id": b.get("id", ""), "type": "function",
         "function": {"name": b.get("name", ""), "arguments": orjson.dumps(b.get("input", {})).decode()}}
        for b in blocks if b.get("type") == "tool_use"
    ]  # fmt: skip
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    reasoning = "".join(b.get("thinking", "") for b in blocks if b.get("type") == "thinking")
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = calls
    usage = answer.get("usage")
    finish = finish_reason(answer.get("stop_reason"))
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    return {
        "id": str(answer.get("id", "")),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(answer.get("model", "")),
        "choices": [choice],
        "usage": chat_usage(usage if isinstance(usage, dict) else {}),
    }
