"""Chat answers shaped by the request: `tools` (a tool call), `n` (several choices), and
`response_format` (JSON content), as OpenAI shapes them, so demos and tests can show each.

Used by `proxy.mock.answers.routes` only when a request asks for one of them; a plain request keeps the
plain, cheaper path.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.mock.answers.payloads import _envelope, sse

DONE = b"data: [DONE]\n\n"
MAX_N = 8


def wants_shape(payload: dict[str, Any]) -> bool:
    return bool(payload.get("tools")) or payload.get("n") not in (None, 1) or _structured(payload)


def check_shape(payload: dict[str, Any]) -> str | None:
    """A 400 message for a shape this mock refuses, as OpenAI words it; None when fine."""
    n = payload.get("n", 1)
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_N):
        return f"'n' must be an integer between 1 and {MAX_N}"
    tools = payload.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
        return "'tools' must be a list of tool objects"
    return None


def _structured(payload: dict[str, Any]) -> bool:
    fmt = payload.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")


def _tool_call(payload: dict[str, Any], name: str, seq: int) -> dict[str, Any] | None:
    """The call of the first tool, unless the request says none, or its last message is a tool's
    result (a model that has its tool's answer answers in text)."""
    tools = payload.get("tools")
    messages = payload.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    answered = isinstance(last, dict) and last.get("role") == "tool"
    if not tools or payload.get("tool_choice") == "none" or answered:
        return None
    function = tools[0].get("function") if isinstance(tools[0].get("function"), dict) else {}
    arguments = orjson.dumps({"mock": name}).decode()
    return {"id": f"call_{name}_{seq}", "type": "function",
            "function": {"name": str(function.get("name", "tool")), "arguments": arguments}}  # fmt: skip


def _content(payload: dict[str, Any], name: str, text: str, index: int) -> str:
    if _structured(payload):
        return orjson.dumps({"mock": name, "choice": index}).decode()
    return text if index == 0 else f"{text}(choice {index})"


def shaped_completion(payload: dict[str, Any], ident: str, *, name: str, seq: int, text: str, usage: Any) -> bytes:
    call = _tool_call(payload, name, seq)
    choices = []
    for index in range(payload.get("n") or 1):
        if call is not None:
            message, finish = {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"
        else:
            message, finish = {"role": "assistant", "content": _content(payload, name, text, index)}, "stop"
        choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": finish})
    return orjson.dumps(_envelope(ident, "chat.completion", payload["model"], name, choices) | {"usage": usage})


def shaped_chunks(payload: dict[str, Any], ident: str, *, name: str, seq: int, text: str, usage: Any) -> list[bytes]:
    """Per choice: a role chunk, the content (or the tool call's name then arguments), a finish chunk."""
    model, call = payload["model"], _tool_call(payload, name, seq)

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse(_envelope(ident, "chat.completion.chunk", model, name, [choice]))

    events = []
    for index in range(payload.get("n") or 1):
        events.append(chunk(index, {"role": "assistant", "content": None if call else ""}))
        if call is not None:
            head = {
                "index": 0,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            events.append(chunk(index, {"tool_calls": [head]}))
            events.append(
                chunk(index, {"tool_calls": [{"index": 0, "function": {"arguments": call["function"]["arguments"]}}]})
            )
            events.append(chunk(index, {}, "tool_calls"))
        else:
            events.append(chunk(index, {"content": _content(payload, name, text, index)}))
            events.append(chunk(index, {}, "stop"))
    if usage is not None:
        events.append(sse(_envelope(ident, "chat.completion.chunk", model, name, []) | {"usage": usage}))
    events.append(DONE)
    return events
