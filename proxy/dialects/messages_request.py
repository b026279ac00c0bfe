"""A Messages API request read, checked, and translated into a Chat Completions request. Pure.

The fields, as Anthropic documents them (https://docs.claude.com/en/api/messages): `model`,
`max_tokens` (required), `messages` (alternating `user` / `assistant` turns whose `content` is a
string or a list of content blocks), `system` (a string or text blocks), `tools` (`name`,
`description`, `input_schema`), `tool_choice` (`auto`, `any`, `tool` with a `name`, `none`;
`disable_parallel_tool_use`), `stop_sequences`, `temperature`, `top_p`, `top_k`, `metadata.user_id`,
`thinking`, `stream`.

Translated (`chat_request`):
- `system` -> a first `system` message (text blocks joined by a blank line);
- `text` blocks -> text (a user turn with an image keeps OpenAI content parts); `image` blocks with a
  `base64` or `url` source -> `image_url` parts (a data URL for base64);
- `tool_use` blocks -> the assistant turn's `tool_calls` (`input` as JSON `arguments`);
  `tool_result` blocks -> `tool` messages, in order, before the rest of the user turn (OpenAI's
  order); a tool result's text is its content, its images go into the user turn that follows;
- `tools` -> `function` tools (`input_schema` as `parameters`); `tool_choice` -> `auto`,
  `required`, a named function or `none`; `disable_parallel_tool_use` -> `parallel_tool_calls: false`;
- `stop_sequences` -> `stop`; `max_tokens`, `temperature`, `top_p` as they are;
  `metadata.user_id` -> `user`; `stream` -> `stream` with `stream_options.include_usage`, so the
  usage the Messages stream reports at its end is the provider's own count.

Dropped (no Chat equivalent; the answer is still a faithful one): `top_k`, `cache_control` marks
(prompt caching is Anthropic's), `thinking` (an OpenAI-speaking provider is not asked to reason;
one that reasons anyway has its reasoning returned as `thinking` blocks), `thinking` and
`redacted_thinking` blocks of earlier assistant turns, a tool result's `is_error`, `service_tier`,
`context_management`, `metadata` other than `user_id`.

Not translatable (`untranslatable` names it, and only Anthropic-speaking offers are tried): server
tools (a tool with a `type`, such as `web_search_20250305`, `bash_20250124`,
`text_editor_20250124`, `computer_20250124`), `mcp_servers`, `container`, structured outputs
(`output_format`, `output_config`), and content blocks other than the ones above (`document`,
`search_result`, `server_tool_use`, `web_search_tool_result`, images from the Files API).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from proxy.errors import BadRequest

NATIVE_FIELDS = ("mcp_servers", "container", "output_format", "output_config")
USER_BLOCKS = frozenset({"text", "image", "tool_result"})
ASSISTANT_BLOCKS = frozenset({"text", "tool_use", "thinking", "redacted_thinking"})
IMAGE_SOURCES = frozenset({"base64", "url"})
ROLES = ("user", "assistant")


# --- reading -----------------------------------------------------------------------------------


def check_messages(body: Mapping[str, Any], *, max_tokens: bool = True) -> None:
    """`BadRequest` (Anthropic's wording where it has one) unless `body` is a Messages request:
    `messages` a non-empty list of `user`/`assistant` turns with string or block-list content, and
    (`max_tokens`: a generation, not a count) `max_tokens` a positive integer."""
    if max_tokens:
        value = body.get("max_tokens")
        if value is None:
            raise BadRequest("max_tokens: Field required", param="max_tokens")
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadRequest("max_tokens: must be an integer of at least 1", param="max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: must be a non-empty list of turns", param="messages")
    for position, message in enumerate(messages):
        _check_turn(message, f"messages.{position}")
    system = body.get("system")
    if system is not None and not isinstance(system, str) and not _blocks(system):
        raise BadRequest("system: must be a string or a list of text blocks", param="system")


def _check_turn(message: Any, where: str) -> None:
    if not isinstance(message, dict) or message.get("role") not in ROLES:
        raise BadRequest(f"{where}.role: must be 'user' or 'assistant'", param=where)
    content = message.get("content")
    if not isinstance(content, str) and not _blocks(content):
        raise BadRequest(f"{where}.content: must be a string or a list of content blocks", param=where)


def _blocks(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in value)


def untranslatable(body: Mapping[str, Any]) -> str | None:
    """What in this (checked) Messages request a Chat request cannot carry, or None."""
    for field in NATIVE_FIELDS:
        if body.get(field) is not None:
            return f"`{field}`"
    for tool in body.get("tools") or ():
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind not in (None, "custom"):
            return f"the server tool {kind}"
    for message in body["messages"]:
        allowed = USER_BLOCKS if message["role"] == "user" else ASSISTANT_BLOCKS
        found = _untranslatable_block(message["content"], allowed)
        if found is not None:
            return found
    return None


def _untranslatable_block(content: Any, allowed: frozenset[str]) -> str | None:
    if isinstance(content, str):
        return None
    for block in content:
        kind = block["type"]
        if kind not in allowed:
            return f"{kind} content blocks"
        if kind == "image" and _source_kind(block) not in IMAGE_SOURCES:
            return f"image blocks with a {_source_kind(block)} source"
        if kind == "tool_result" and isinstance(block.get("content"), list):
            found = _untranslatable_block(block["content"], frozenset({"text", "image"}))
            if found is not None:
                return found
    return None


def _source_kind(block: Mapping[str, Any]) -> str:
    source = block.get("source")
    return str(source.get("type")) if isinstance(source, dict) else "missing"


# --- translating -------------------------------------------------------------------------------


def chat_request(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The Chat Completions request for a checked, translatable Messages request, for `model`."""
    messages: list[dict[str, Any]] = []
    system = _text_of(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for turn in body["messages"]:
        messages += _assistant(turn["content"]) if turn["role"] == "assistant" else _user(turn["content"])
    out: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": body.get("max_tokens")}
    for field in ("temperature", "top_p"):
        if body.get(field) is not None:
            out[field] = body[field]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    user = body.get("metadata", {}).get("user_id") if isinstance(body.get("metadata"), dict) else None
    if isinstance(user, str):
        out["user"] = user
    if body.get("tools"):
        out["tools"] = [_tool(tool) for tool in body["tools"]]
    _tool_choice(out, body.get("tool_choice"))
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    if out["max_tokens"] is None:
        del out["max_tokens"]  # a count_tokens body has none
    return out


def _text_of(system: Any) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n\n".join(b["text"] for b in system if b.get("type") == "text" and isinstance(b.get("text"), str))
    return ""


def _image_part(block: Mapping[str, Any]) -> dict[str, Any]:
    source = block["source"]
    if source["type"] == "url":
        url = source.get("url", "")
    else:
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    return {"type": "image_url", "image_url": {"url": url}}


def _user(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A user turn: its tool results as `tool` messages first, then the rest as one user message."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in content:
        kind = block["type"]
        if kind == "tool_result":
            text, images = _tool_result(block.get("content"))
            tools.append({"role": "tool", "tool_call_id": block.get("tool_use_id", ""), "content": text})
            parts += images
        elif kind == "image":
            parts.append(_image_part(block))
        elif kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
    if not parts:
        return tools
    if all(part["type"] == "text" for part in parts):
        return [*tools, {"role": "user", "content": "".join(part["text"] for part in parts)}]
    return [*tools, {"role": "user", "content": parts}]


def _tool_result(content: Any) -> tuple[str, list[dict[str, Any]]]:
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        return "", []
    text = "".join(b.get("text", "") for b in content if b.get("type") == "text")
    return text, [_image_part(b) for b in content if b.get("type") == "image"]


def _assistant(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "assistant", "content": content}]
    text = "".join(b.get("text", "") for b in content if b["type"] == "text")
    calls = [
        {
            "id": b.get("id", ""),
            "type": "function",
            "function": {"name": b.get("name", ""), "arguments": orjson.dumps(b.get("input", {})).decode()},
        }
        for b in content
        if b["type"] == "tool_use"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    elif not text:
        message["content"] = ""  # a turn of thinking only: an empty answer, still a turn
    return [message]


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.get("name", "")}
    if tool.get("description"):
        function["description"] = tool["description"]
    function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


def _tool_choice(out: dict[str, Any], choice: Any) -> None:
    if not isinstance(choice, dict):
        return
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name", "")}}
    if choice.get("disable_parallel_tool_use") is True and out.get("tools"):
        out["parallel_tool_calls"] = False


def stop_sequences(body: Mapping[str, Any]) -> Sequence[str]:
    """The request's `stop_sequences` (to tell a `stop_sequence` stop from an `end_turn`)."""
    found = body.get("stop_sequences")
    return [s for s in found if isinstance(s, str)] if isinstance(found, list) else []
