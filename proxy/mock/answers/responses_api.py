"""The mock's Responses API: create (whole or as typed events), retrieve, delete, cancel, input items.

Shapes follow OpenAI's Responses API reference: a `response` object with `output` items (a
`message` with `output_text` content, or a `function_call` when `tools` are given), `usage` as
`input_tokens`/`output_tokens`, and a stream of `event: <type>` + `data: {"type": <type>,
"sequence_number": n, ...}` events from `response.created` to `response.completed`. A response
is stored (unless `store: false`) in this mock only, so a follow-up (`previous_response_id`) or a
retrieve that reaches another mock gets the 400/404 a real provider sends for an id it never made.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from proxy.mock.answers import payloads
from proxy.mock.answers.routes import Answer, Call, error

Store = dict[str, dict[str, Any]]


def create(call: Call) -> Answer:
    payload = call.payload
    problem = _check(call)
    if problem is not None:
        return problem
    previous = payload.get("previous_response_id")
    if previous is not None and previous not in call.store:
        return error(400, f"Previous response with id '{previous}' not found.")
    name = call.config.name
    response = _response(call, "completed")
    if payload.get("store", True):
        call.store[response["id"]] = {"response": response, "input": _input_items(payload.get("input"), name)}
    if payload.get("stream"):
        return Answer(events=tuple(_events(response)))
    return Answer(body=orjson.dumps(response))


def retrieve(call: Call, response_id: str) -> Answer:
    found = call.store.get(response_id)
    if found is None:
        return error(404, f"No response found with id '{response_id}'.")
    return Answer(body=orjson.dumps(found["response"]))


def delete(call: Call, response_id: str) -> Answer:
    if call.store.pop(response_id, None) is None:
        return error(404, f"No response found with id '{response_id}'.")
    return Answer(body=orjson.dumps({"id": response_id, "object": "response.deleted", "deleted": True}))


def cancel(call: Call, response_id: str) -> Answer:
    found = call.store.get(response_id)
    if found is None:
        return error(404, f"No response found with id '{response_id}'.")
    found["response"] = {**found["response"], "status": "cancelled"}
    return Answer(body=orjson.dumps(found["response"]))


def input_items(call: Call, response_id: str) -> Answer:
    found = call.store.get(response_id)
    if found is None:
        return error(404, f"No response found with id '{response_id}'.")
    items = found["input"]
    page = {"object": "list", "data": items, "has_more": False}
    page |= {"first_id": items[0]["id"] if items else None, "last_id": items[-1]["id"] if items else None}
    return Answer(body=orjson.dumps(page))


def _check(call: Call) -> Answer | None:
    payload = call.payload
    if not isinstance(payload, dict):
        return error(400, "the request body must be a JSON object")
    if not isinstance(payload.get("model"), str) or not payload["model"]:
        return error(400, "you must provide a model parameter")
    if call.config.strict_models and payload["model"] not in call.config.models:
        return error(404, f"The model `{payload['model']}` does not exist on mock {call.config.name}")
    if not isinstance(payload.get("input"), str | list):
        return error(400, "missing or invalid 'input'")
    return None


def _response(call: Call, status: str) -> dict[str, Any]:
    payload, name, seq = call.payload, call.config.name, call.seq
    pieces = payloads.reply_pieces(name, call.chunks)
    output = _output(payload, name, seq, pieces)
    words = max(1, len(str(payload.get("input")).split()))
    text = payload.get("text") if isinstance(payload.get("text"), dict) else {"format": {"type": "text"}}
    return {
        "id": f"resp_{name}_{seq}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": payload.get("instructions"),
        "max_output_tokens": payload.get("max_output_tokens"),
        "model": payload["model"],
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": payload.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": bool(payload.get("store", True)),
        "temperature": 1.0,
        "text": text,
        "tool_choice": payload.get("tool_choice", "auto"),
        "tools": payload.get("tools") or [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": words,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": len(pieces),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": words + len(pieces),
        },
        "user": None,
        "metadata": {},
    }


def _output(payload: dict[str, Any], name: str, seq: int, pieces: tuple[str, ...]) -> list[dict[str, Any]]:
    tools = payload.get("tools")
    if isinstance(tools, list) and tools and payload.get("tool_choice") != "none":
        tool = tools[0] if isinstance(tools[0], dict) else {}
        arguments = orjson.dumps({"mock": name}).decode()
        call_id = f"call_{name}_{seq}"
        item = {"id": f"fc_{name}_{seq}", "type": "function_call", "status": "completed", "call_id": call_id}
        return [item | {"name": str(tool.get("name", "tool")), "arguments": arguments}]
    fmt = payload.get("text", {}).get("format", {}) if isinstance(payload.get("text"), dict) else {}
    text = (
        orjson.dumps({"mock": name}).decode() if fmt.get("type") in ("json_object", "json_schema") else "".join(pieces)
    )
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return [
        {"id": f"msg_{name}_{seq}", "type": "message", "status": "completed", "role": "assistant", "content": content}
    ]


def _events(response: dict[str, Any]) -> list[bytes]:
    """The typed events of one response, in the order OpenAI sends them."""
    events: list[bytes] = []

    def emit(kind: str, **fields: Any) -> None:
        data = {"type": kind, "sequence_number": len(events), **fields}
        events.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")

    started = {**response, "status": "in_progress", "output": [], "usage": None}
    emit("response.created", response=started)
    emit("response.in_progress", response=started)
    for index, item in enumerate(response["output"]):
        _item_events(emit, index, item)
    emit("response.completed", response=response)
    return events


def _item_events(emit: Any, index: int, item: dict[str, Any]) -> None:
    if item["type"] == "function_call":
        emit("response.output_item.added", output_index=index, item={**item, "arguments": "", "status": "in_progress"})
        ident = item["id"]
        emit("response.function_call_arguments.delta", item_id=ident, output_index=index, delta=item["arguments"])
        emit("response.function_call_arguments.done", item_id=ident, output_index=index, arguments=item["arguments"])
        emit("response.output_item.done", output_index=index, item=item)
        return
    ident, part = item["id"], item["content"][0]
    where = {"item_id": ident, "output_index": index, "content_index": 0}
    emit("response.output_item.added", output_index=index, item={**item, "status": "in_progress", "content": []})
    emit("response.content_part.added", **where, part={**part, "text": ""})
    for piece in _split(part["text"]):
        emit("response.output_text.delta", **where, delta=piece, logprobs=[])
    emit("response.output_text.done", **where, text=part["text"], logprobs=[])
    emit("response.content_part.done", **where, part=part)
    emit("response.output_item.done", output_index=index, item=item)


def _split(text: str) -> list[str]:
    words = text.split(" ")
    return [word + (" " if i + 1 < len(words) else "") for i, word in enumerate(words) if word or i + 1 < len(words)]


def _input_items(raw: Any, name: str) -> list[dict[str, Any]]:
    messages = [{"role": "user", "content": raw}] if isinstance(raw, str) else [m for m in raw if isinstance(m, dict)]
    items = []
    for index, message in enumerate(messages):
        content = message.get("content")
        parts = [{"type": "input_text", "text": content}] if isinstance(content, str) else content or []
        items.append(
            {
                "id": f"msg_in_{name}_{index}",
                "type": "message",
                "role": message.get("role", "user"),
                "status": "completed",
                "content": parts,
            }
        )
    return items


ROUTES = {"/v1/responses": ("POST", create)}
# /v1/responses/{id}[/suffix]: (method, suffix) -> handler
BY_ID = {
    ("GET", ""): retrieve,
    ("DELETE", ""): delete,
    ("POST", "/cancel"): cancel,
    ("GET", "/input_items"): input_items,
}


def route_by_id(call: Call, method: str, path: str) -> Answer | None:
    """Answer a `/v1/responses/{id}...` path, or None when the path is not one of them."""
    rest = path.removeprefix("/v1/responses/")
    if rest == path or not rest:
        return None
    response_id, slash, suffix = rest.partition("/")
    handler = BY_ID.get((method, slash + suffix))
    if handler is None:
        known = any(s == slash + suffix for _, s in BY_ID)
        return error(405, f"{path} does not take {method}") if known else None
    return handler(call, response_id)
