"""A request of one API as the other's (`proxy.dialects.messages_request`, `proxy.dialects.chat_request`):
what is carried, how, and what is named as untranslatable."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proxy.dialects.chat_request import DEFAULT_MAX_TOKENS, messages_request
from proxy.dialects.chat_request import untranslatable as chat_untranslatable
from proxy.dialects.messages_request import chat_request, check_messages, untranslatable
from proxy.errors import BadRequest

# The weather tool as Anthropic's streaming guide declares it
# (https://platform.claude.com/docs/en/build-with-claude/streaming, "Streaming request with tool use").
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}},
        "required": ["location"],
    },
}
PNG = "iVBORw0KGgo="


def tool_turns() -> dict[str, Any]:
    """A Messages conversation with a tool call and its result, as the anthropic SDK sends it."""
    return {
        "model": "claude-x",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Use tools.",
                                                                 "cache_control": {"type": "ephemeral"}}],
        "tools": [WEATHER],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["\n\nHuman:"],
        "temperature": 0.2,
        "top_k": 5,
        "metadata": {"user_id": "u-1"},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in SF? "},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "use the tool", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "San Francisco, CA"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "15 C"}]},
                {"type": "text", "text": "Thanks"},
            ]},
        ],
    }  # fmt: skip


def test_a_messages_conversation_with_tools_becomes_the_chat_one() -> None:
    chat = chat_request(tool_turns(), "openai/gpt-4")
    assert chat["model"] == "openai/gpt-4"
    assert chat["max_tokens"] == 1024 and chat["temperature"] == 0.2 and "top_k" not in chat
    assert chat["stop"] == ["\n\nHuman:"] and chat["user"] == "u-1"
    assert chat["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": WEATHER["description"], "parameters": WEATHER["input_schema"]}}]  # fmt: skip
    assert chat["tool_choice"] == "required" and chat["parallel_tool_calls"] is False
    system, user, assistant, tool, after = chat["messages"]
    assert system == {"role": "system", "content": "You are terse.\n\nUse tools."}
    assert user == {"role": "user", "content": [
        {"type": "text", "text": "Weather in SF? "},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]}  # fmt: skip
    assert assistant["content"] == "Checking." and "thinking" not in orjson.dumps(assistant).decode()
    call = assistant["tool_calls"][0]
    assert call["id"] == "toolu_1" and call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"location": "San Francisco, CA"}
    assert tool == {"role": "tool", "tool_call_id": "toolu_1", "content": "15 C"}
    assert after == {"role": "user", "content": "Thanks"}


def test_a_streamed_messages_request_asks_the_chat_offer_for_usage() -> None:
    body = {"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    chat = chat_request(body, "p/m")
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}
    assert chat["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]}, "web_search_20250305"),
        ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "bash_20250124"),
        ({"mcp_servers": [{"type": "url", "url": "https://example.com/sse", "name": "x"}]}, "mcp_servers"),
        ({"messages": [{"role": "user", "content": [{"type": "document", "source": {
            "type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}]}]}, "document"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]},
         "file source"),
    ],
)
def test_what_a_chat_request_cannot_carry_is_named(change: dict[str, Any], named: str) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], **change}
    check_messages(body)
    found = untranslatable(body)
    assert found is not None and named in found


def test_a_plain_or_tool_conversation_is_translatable() -> None:
    assert untranslatable(tool_turns()) is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "max_tokens: Field required"),
        ({"max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
        ({"max_tokens": 5, "messages": []}, "messages"),
        ({"max_tokens": 5, "messages": [{"role": "system", "content": "hi"}]}, "messages.0.role"),
        ({"max_tokens": 5, "messages": [{"role": "user", "content": [{"text": "no type"}]}]}, "messages.0.content"),
        ({"max_tokens": 5, "system": 3, "messages": [{"role": "user", "content": "hi"}]}, "system"),
    ],
)
def test_a_body_that_is_not_a_messages_request_is_refused(body: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        check_messages(body)


def test_count_tokens_needs_no_max_tokens() -> None:
    check_messages({"messages": [{"role": "user", "content": "hi"}]}, max_tokens=False)


def chat_with_tools() -> dict[str, Any]:
    """An OpenAI chat conversation with a tool call and its result (OpenAI's function calling guide's shape)."""
    return {
        "model": "claude-x",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                                         {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_PieqNSej6kM9hgYbcQdbZSaC",
             "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_PieqNSej6kM9hgYbcQdbZSaC", "content": "15 C"},
            {"role": "user", "content": "and tomorrow?"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "weather",
                   "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "temperature": 1.7,
        "stop": "END",
        "user": "u-2",
        "seed": 7,
        "stream": True,
    }  # fmt: skip


def test_a_chat_conversation_with_tools_becomes_the_messages_one() -> None:
    body = messages_request(chat_with_tools(), "claude-x-1", 8192)
    assert body["model"] == "claude-x-1" and body["system"] == "You are terse."
    assert body["max_tokens"] == 8192  # the offer's known limit: Messages requires one
    assert body["temperature"] == 1.0  # Messages takes 0..1
    assert body["stop_sequences"] == ["END"] and body["metadata"] == {"user_id": "u-2"} and "seed" not in body
    assert body["tools"] == [{"name": "get_weather", "description": "weather",
                              "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}]  # fmt: skip
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather"} and body["stream"] is True
    user, assistant, results = body["messages"]
    assert user["content"][1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    assert assistant == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "call_PieqNSej6kM9hgYbcQdbZSaC", "name": "get_weather", "input": {"location": "Paris"}}
    ]}  # fmt: skip
    # the tool's result and the next user text are one user turn: Messages alternates roles
    assert results == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_PieqNSej6kM9hgYbcQdbZSaC", "content": "15 C"},
        {"type": "text", "text": "and tomorrow?"},
    ]}  # fmt: skip


def test_a_chat_request_without_a_limit_gets_the_default_one() -> None:
    body = messages_request({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, "p", None)
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"n": 2}, "`n`"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "json_schema"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]},
         "input_audio"),
        ({"messages": [{"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "not json"}}]}]}, "arguments"),
    ],
)
def test_what_a_messages_request_cannot_carry_is_named(change: dict[str, Any], named: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **change}
    found = chat_untranslatable(body)
    assert found is not None and named in found
    assert chat_untranslatable(chat_with_tools()) is None
