"""Anthropic's Messages API, spoken natively: `POST /v1/messages` and `/v1/messages/count_tokens`.

What a healthy Anthropic-speaking provider says, in the shapes its docs record:
- a whole answer as the Messages API reference shows it (https://docs.claude.com/en/api/messages:
  `{"content": [{"text": "Hi! My name is Claude.", "type": "text"}], "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
  "model": ..., "role": "assistant", "stop_reason": "end_turn", "stop_sequence": null, "type":
  "message", "usage": {"input_tokens": 2095, "output_tokens": 503}}`);
- a stream event by event as the streaming guide's recorded responses show them
  (https://platform.claude.com/docs/en/build-with-claude/streaming, "Basic streaming request",
  "Streaming request with tool use", "Streaming request with extended thinking"; the same order as
  anthropic-sdk-python's tests/lib/streaming/fixtures/basic_response.txt and tool_use_response.txt):
  `message_start` (usage with `input_tokens`, `cache_creation_input_tokens`,
  `cache_read_input_tokens`, `output_tokens: 1`), `content_block_start`, one `ping`,
  `content_block_delta`s, `content_block_stop`, `message_delta` (`stop_reason`, `usage.output_tokens`),
  `message_stop`;
- with `tools` (and no tool result in the last turn): a text block, then a `tool_use` block for the
  first tool whose `input` streams as `input_json_delta`s, the first one empty, as recorded;
  after a tool result: text;
- with `thinking` enabled: a `thinking` block first (`thinking_delta`s, then one `signature_delta`);
- errors in Anthropic's envelope (`{"type": "error", "error": {"type", "message"}}`): a missing
  `anthropic-version` header is refused as Anthropic refuses it, and a missing `max_tokens` too.

Tokens are counted as the other mock answers count them (words); words inside blocks marked with
`cache_control` are reported as `cache_read_input_tokens` (every request a cache hit), the rest as
`input_tokens`, so a test can follow cached tokens through the proxy. The reply's text is the mock's
usual "NAME#1 NAME#2 ..." pieces.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.mock.answers import payloads
from proxy.mock.answers.routes import Answer, Call

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
               529: "overloaded_error"}  # fmt: skip
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."  # the streaming guide's, as recorded
PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def error_body(status: int, message: str) -> bytes:
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def error(status: int, message: str) -> Answer:
    return Answer(status, error_body(status, message))


def error_event(kind: str = "overloaded_error", message: str = "Overloaded") -> bytes:
    """The in-stream error the streaming guide records ("Error events")."""
    body = orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})
    return b"event: error\ndata: " + body + b"\n\n"


def event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **payload}) + b"\n\n"


def _problem(call: Call, *, generation: bool) -> Answer | None:
    payload = call.payload
    if not isinstance(payload, dict):
        return error(400, "the request body must be a JSON object")
    if not isinstance(payload.get("model"), str) or not payload["model"]:
        return error(400, "model: Field required")
    if call.config.strict_models and payload["model"] not in call.config.models:
        return error(404, f"model: {payload['model']}")
    if generation and not isinstance(payload.get("max_tokens"), int):
        return error(400, "max_tokens: Field required")
    if not isinstance(payload.get("messages"), list) or not payload["messages"]:
        return error(400, "messages: Field required")
    return None


def _words(value: Any, cached: bool = False) -> tuple[int, int]:
    """(words, words under a `cache_control` mark) of a prompt's strings."""
    if isinstance(value, str):
        count = len(value.split())
        return count, count if cached else 0
    if isinstance(value, list):
        totals = [_words(item, cached) for item in value]
        return sum(t[0] for t in totals), sum(t[1] for t in totals)
    if isinstance(value, dict):
        marked = cached or value.get("cache_control") is not None
        parts = [value.get(k) for k in ("text", "content", "system", "messages", "thinking")]
        return _words([p for p in parts if p is not None], marked)
    return 0, 0


def prompt_usage(payload: dict[str, Any]) -> dict[str, int]:
    words, cached = _words([payload.get("system") or "", payload["messages"]])
    return {"input_tokens": max(1, words - cached), "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached}  # fmt: skip


def _tool(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The tool the answer calls: the first one, unless the last turn brings a tool's result."""
    tools = payload.get("tools")
    choice = payload.get("tool_choice")
    if not tools or not isinstance(tools[0], dict) or (isinstance(choice, dict) and choice.get("type") == "none"):
        return None
    last = payload["messages"][-1]
    content = last.get("content") if isinstance(last, dict) else None
    if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
        return None
    return tools[0]


def _thinking(payload: dict[str, Any]) -> bool:
    thinking = payload.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def messages(call: Call) -> Answer:
    problem = _problem(call, generation=True)
    if problem is not None:
        return problem
    payload, name = call.payload, call.config.name
    ident = f"msg_{name}_{call.seq}"
    pieces = payloads.reply_pieces(name, call.chunks)
    tool = _tool(payload)
    usage = prompt_usage(payload)
    if payload.get("stream"):
        events = _events(payload, ident, pieces, tool=tool, usage=usage, name=name)
        return Answer(events=tuple(events), content_type=b"text/event-stream")
    content: list[dict[str, Any]] = []
    if _thinking(payload):
        content.append({"type": "thinking", "thinking": f"{name} thinks", "signature": SIGNATURE})
    content.append({"type": "text", "text": "".join(pieces)})
    if tool is not None:
        content.append({"type": "tool_use", "id": f"toolu_{name}_{call.seq}", "name": tool.get("name", "tool"),
                        "input": {"mock": name}})  # fmt: skip
    body = {
        "content": content, "id": ident, "model": payload["model"], "role": "assistant",
        "stop_reason": "end_turn" if tool is None else "tool_use", "stop_sequence": None, "type": "message",
        "usage": {**usage, "output_tokens": len(pieces)},
    }  # fmt: skip
    return Answer(body=orjson.dumps(body))


def _start(index: int, block: dict[str, Any]) -> bytes:
    return event("content_block_start", {"index": index, "content_block": block})


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return event("content_block_delta", {"index": index, "delta": delta})


def _stop(index: int) -> bytes:
    return event("content_block_stop", {"index": index})


def _events(
    payload: dict[str, Any], ident: str, pieces: tuple[str, ...], *, tool: Any, usage: dict[str, int], name: str
) -> list[bytes]:
    message = {"id": ident, "type": "message", "role": "assistant", "model": payload["model"], "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}  # fmt: skip
    events = [event("message_start", {"message": message})]
    index = 0
    if _thinking(payload):
        events.append(_start(0, {"type": "thinking", "thinking": "", "signature": ""}))
        events.append(_delta(0, {"type": "thinking_delta", "thinking": f"{name} thinks"}))
        events.append(_delta(0, {"type": "signature_delta", "signature": SIGNATURE}))
        events.append(_stop(0))
        index = 1
    events += [_start(index, {"type": "text", "text": ""}), PING]
    events += [_delta(index, {"type": "text_delta", "text": piece}) for piece in pieces]
    events.append(_stop(index))
    if tool is not None:
        index += 1
        events.append(_start(index, {"type": "tool_use", "id": f"toolu_{ident}", "name": tool.get("name", "tool"),
                                     "input": {}}))  # fmt: skip
        for part in ("", '{"mock": ', orjson.dumps(name).decode() + "}"):
            events.append(_delta(index, {"type": "input_json_delta", "partial_json": part}))
        events.append(_stop(index))
    stop = "end_turn" if tool is None else "tool_use"
    events.append(event("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                          "usage": {"output_tokens": len(pieces)}}))  # fmt: skip
    events.append(event("message_stop", {}))
    return events


def count_tokens(call: Call) -> Answer:
    """`{"input_tokens": N}`, the whole prompt (https://docs.claude.com/en/api/messages-count-tokens)."""
    problem = _problem(call, generation=False)
    if problem is not None:
        return problem
    usage = prompt_usage(call.payload)
    tools = orjson.dumps(call.payload.get("tools") or []).decode()
    total = usage["input_tokens"] + usage["cache_read_input_tokens"] + len(tools.split()) // 4
    return Answer(body=orjson.dumps({"input_tokens": total}))


ROUTES = {"/v1/messages": ("POST", messages), "/v1/messages/count_tokens": ("POST", count_tokens)}
