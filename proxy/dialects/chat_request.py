"""A Chat Completions request translated into a Messages API request. Pure.

For a chat client served by an Anthropic-speaking offer (https://docs.claude.com/en/api/messages
for the target fields; OpenAI's chat request for the source).

Translated (`messages_request`):
- `system` and `developer` messages -> `system` (joined by a blank line, wherever they stood);
- `user` text and text parts -> text blocks; `image_url` parts -> `image` blocks (a `data:` URL as a
  `base64` source, another URL as a `url` source);
- an assistant turn's `content` -> a text block, its `tool_calls` -> `tool_use` blocks (`arguments`
  parsed into `input`); `tool` messages -> `tool_result` blocks of one user turn; consecutive turns
  of one role are merged, since Messages alternates `user` and `assistant`;
- `tools` (`function`) -> tools with `input_schema`; `tool_choice` `auto` / `required` / `none` /
  a named function -> `auto` / `any` / `none` / `tool`; `parallel_tool_calls: false` ->
  `disable_parallel_tool_use`;
- `max_completion_tokens` or `max_tokens` -> `max_tokens` (required by Messages: without either,
  the offer's known `max_completion_tokens`, else `DEFAULT_MAX_TOKENS`); `temperature` (clamped to
  Messages' 0..1) and `top_p`; `stop` -> `stop_sequences`; `user` -> `metadata.user_id`; `stream`.

Dropped: `seed`, `frequency_penalty`, `presence_penalty`, `logit_bias`, `reasoning_effort`,
`service_tier`, `store`, `metadata`, `stream_options` (usage is in every Messages stream; the
translated stream reports it when the client asked), an assistant turn's `reasoning_content`.

Not translatable (`untranslatable` names it; only OpenAI-speaking offers are tried): `n` above 1,
`logprobs` / `top_logprobs`, `response_format` other than text, `audio` / `modalities`, the legacy
`functions` and `function` role, `input_audio` and `file` parts, and a tool call whose `arguments`
are not a JSON object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

DEFAULT_MAX_TOKENS = 4096
NATIVE_FIELDS = ("audio", "functions", "function_call")
TEXT_PARTS = frozenset({"text", "image_url"})


def untranslatable(body: Mapping[str, Any]) -> str | None:
    """What in this chat request a Messages request cannot carry, or None."""
    found = _untranslatable_field(body)
    messages = body.get("messages")
    if found is None and not isinstance(messages, list):
        found = "`messages` that is not a list"
    for message in messages if found is None and isinstance(messages, list) else ():
        found = found or _untranslatable_message(message)
    return found


def _untranslatable_field(body: Mapping[str, Any]) -> str | None:
    n = body.get("n")
    response_format = body.get("response_format")
    checks = (
        (isinstance(n, int) and n > 1, "`n` above 1"),
        (bool(body.get("logprobs") or body.get("top_logprobs")), "`logprobs`"),
        (
            isinstance(response_format, dict) and response_format.get("type") not in (None, "text"),
            f"response_format {response_format.get('type') if isinstance(response_format, dict) else ''}",
        ),
        (body.get("modalities") not in (None, ["text"]), "`modalities`"),
        *((body.get(field) is not None, f"`{field}`") for field in NATIVE_FIELDS),
    )
    return next((name for failed, name in checks if failed), None)


def _untranslatable_message(message: Any) -> str | None:
    if not isinstance(message, dict) or message.get("role") not in ("system", "developer", "user", "assistant", "tool"):
        return "a message of another role"
    content = message.get("content")
    if isinstance(content, list):
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in TEXT_PARTS:
                return f"{kind} content parts"
    for call in message.get("tool_calls") or ():
        arguments = call.get("function", {}).get("arguments") if isinstance(call, dict) else None
        if not isinstance(_arguments(arguments), dict):
            return "a tool call whose arguments are not a JSON object"
    return None


def _arguments(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    if not text.strip():
        return {}
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def messages_request(body: Mapping[str, Any], model: str, max_tokens: int | None = None) -> dict[str, Any]:
    """The Messages request for a translatable chat request, for `model`; `max_tokens` is the
    offer's known completion limit, used when the request names none."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in body["messages"]:
        role = message["role"]
        if role in ("system", "developer"):
            system.append(_text(message.get("content")))
            continue
        blocks = _blocks(message)
        target = "assistant" if role == "assistant" else "user"
        if turns and turns[-1]["role"] == target:
            turns[-1]["content"] += blocks
        elif blocks:
            turns.append({"role": target, "content": blocks})
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or max_tokens or DEFAULT_MAX_TOKENS
    out: dict[str, Any] = {"model": model, "max_tokens": limit, "messages": turns}
    if system:
        out["system"] = "\n\n".join(system)
    _sampling(out, body)
    if body.get("tools"):
        out["tools"] = [_tool(t) for t in body["tools"] if isinstance(t, dict)]
        _tool_choice(out, body.get("tool_choice"), body.get("parallel_tool_calls"))
    if body.get("stream"):
        out["stream"] = True
    return out


def _sampling(out: dict[str, Any], body: Mapping[str, Any]) -> None:
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        out["temperature"] = min(max(float(temperature), 0.0), 1.0)
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = [s for s in stop if isinstance(s, str)]
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _blocks(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    role, content = message["role"], message.get("content")
    if role == "tool":
        return [{"type": "tool_result", "tool_use_id": message.get("tool_call_id", ""), "content": _text(content)}]
    blocks: list[dict[str, Any]] = []
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    elif isinstance(content, list):
        blocks += [_part(part) for part in content]
    for call in message.get("tool_calls") or ():
        function = call.get("function", {})
        blocks.append({
            "type": "tool_use", "id": call.get("id", ""), "name": function.get("name", ""),
            "input": _arguments(function.get("arguments")),
        })  # fmt: skip
    return blocks


def _part(part: Mapping[str, Any]) -> dict[str, Any]:
    if part["type"] == "text":
        return {"type": "text", "text": part.get("text", "")}
    url = part.get("image_url", {})
    url = url.get("url", "") if isinstance(url, dict) else str(url)
    if url.startswith("data:") and ";base64," in url:
        media_type, _, data = url[len("data:") :].partition(";base64,")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    function = tool.get("function", {})
    out: dict[str, Any] = {"name": function.get("name", "")}
    if function.get("description"):
        out["description"] = function["description"]
    out["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    return out


def _tool_choice(out: dict[str, Any], choice: Any, parallel: Any) -> None:
    picked: dict[str, Any] | None = None
    if choice == "auto":
        picked = {"type": "auto"}
    elif choice == "required":
        picked = {"type": "any"}
    elif choice == "none":
        picked = {"type": "none"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        picked = {"type": "tool", "name": choice["function"].get("name", "")}
    if parallel is False:
        picked = {**(picked or {"type": "auto"}), "disable_parallel_tool_use": True}
    if picked is not None:
        out["tool_choice"] = picked
