"""A whole answer of one API as the other's (`proxy.dialects.answers`), and usage between the two
shapes (`proxy.dialects.usage_shapes`), over recorded answers."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.dialects.answers import chat_answer, messages_answer
from proxy.dialects.usage_shapes import answer_usage, chat_usage, messages_usage
from proxy.upstream.usage import Usage

# The Messages API reference's example answer (https://docs.claude.com/en/api/messages).
ANTHROPIC_TEXT = {
    "content": [{"text": "Hi! My name is Claude.", "type": "text"}],
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "model": "claude-sonnet-4-20250514",
    "role": "assistant",
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "type": "message",
    "usage": {"input_tokens": 2095, "output_tokens": 503},
}
# The tool use guide's example answer (https://docs.claude.com/en/docs/agents-and-tools/tool-use/overview).
ANTHROPIC_TOOL = {
    "id": "msg_01Aq9w938a90dw8q",
    "model": "claude-3-7-sonnet-20250219",
    "stop_reason": "tool_use",
    "role": "assistant",
    "type": "message",
    "content": [
        {"type": "text", "text": "<thinking>I need to call the get_weather function, and the user wants SF, which is "
                                 "likely San Francisco, CA.</thinking>"},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
         "input": {"location": "San Francisco, CA", "unit": "celsius"}},
    ],
}
# A gpt-4o answer with a tool call, as recorded in CtwoC/agent_kit client/output_style/openai_output.md.
OPENAI_TOOL = {
    "id": "chatcmpl-BcQ8ko2nz9B7CRvV0uVbcowidHpQU",
    "choices": [{
        "finish_reason": "tool_calls", "index": 0, "logprobs": None,
        "message": {"content": None, "refusal": None, "role": "assistant", "annotations": [], "audio": None,
                    "function_call": None, "tool_calls": [{"id": "call_qOfTGgDrItLORNfC6VwUbyLL", "function": {
                        "arguments": "{\"location\":\"Shanghai\"}", "name": "get_weather"}, "type": "function"}]},
    }],
    "created": 1748496646, "model": "gpt-4o-2024-08-06", "object": "chat.completion", "service_tier": "default",
    "system_fingerprint": "fp_76544d79cb",
    "usage": {"completion_tokens": 14, "prompt_tokens": 91, "total_tokens": 105,
              "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 0}},
}  # fmt: skip
# A deepseek-reasoner answer with its reasoning, as recorded in opensolon/solon
# solon-projects/solon-ai/solon-ai/src/test/java/features/ai/DeepSeek.md.
DEEPSEEK_REASONER = {
    "id": "931809f8-3d1c-44d9-b124-367d05e0f123", "object": "chat.completion", "created": 1739092483,
    "model": "deepseek-reasoner",
    "choices": [{"index": 0, "message": {
        "role": "assistant", "content": "Hello! How can I assist you today?",
        "reasoning_content": "Okay, the user wrote \"hello\". That's pretty straightforward. I should respond in a "
                             "friendly and welcoming manner."}, "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 6, "completion_tokens": 92, "total_tokens": 98,
              "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 81},
              "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": 6},
    "system_fingerprint": "fp_7e73fd9a08",
}  # fmt: skip


def test_an_anthropic_answer_is_a_chat_completion() -> None:
    chat = chat_answer(ANTHROPIC_TEXT)
    assert chat["object"] == "chat.completion" and chat["model"] == "claude-sonnet-4-20250514"
    choice = chat["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Hi! My name is Claude."}
    assert choice["finish_reason"] == "stop"
    assert chat["usage"]["prompt_tokens"] == 2095 and chat["usage"]["completion_tokens"] == 503


def test_an_anthropic_tool_call_is_a_chat_tool_call() -> None:
    message = chat_answer(ANTHROPIC_TOOL)["choices"][0]
    assert message["finish_reason"] == "tool_calls"
    call = message["message"]["tool_calls"][0]
    assert call["id"] == "toolu_01A09q90qw90lq917835lq9" and call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"location": "San Francisco, CA", "unit": "celsius"}
    assert message["message"]["content"].startswith("<thinking>I need to call")


def test_an_openai_tool_call_is_an_anthropic_tool_use() -> None:
    answer = messages_answer(OPENAI_TOOL)
    assert answer["type"] == "message" and answer["role"] == "assistant" and answer["stop_reason"] == "tool_use"
    assert answer["content"] == [
        {"type": "tool_use", "id": "call_qOfTGgDrItLORNfC6VwUbyLL", "name": "get_weather", "input": {"location": "Shanghai"}}
    ]  # fmt: skip
    assert answer["usage"] == {"input_tokens": 91, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                               "output_tokens": 14}  # fmt: skip


def test_reasoning_is_a_thinking_block_before_the_text() -> None:
    answer = messages_answer(DEEPSEEK_REASONER)
    thinking, text = answer["content"]
    assert thinking["type"] == "thinking" and thinking["thinking"].startswith("Okay, the user wrote")
    assert thinking["signature"] == ""  # no Anthropic model signed it
    assert text == {"type": "text", "text": "Hello! How can I assist you today?"}
    assert answer["stop_reason"] == "end_turn" and answer["stop_sequence"] is None


def test_a_stop_is_a_stop_sequence_only_when_the_provider_names_it() -> None:
    vllm = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ab"}, "finish_reason": "stop",
                         "stop_reason": "END"}]}  # fmt: skip
    assert messages_answer(vllm, ["END"])["stop_reason"] == "stop_sequence"
    assert messages_answer(vllm, ["END"])["stop_sequence"] == "END"
    assert messages_answer(vllm, ["OTHER"])["stop_reason"] == "end_turn"
    length = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "a"}, "finish_reason": "length"}]}
    assert messages_answer(length)["stop_reason"] == "max_tokens"


def test_cached_prompt_tokens_keep_their_meaning_both_ways() -> None:
    # Anthropic's three parts are disjoint (https://platform.claude.com/docs/en/api/rate-limits)
    anthropic = {"input_tokens": 50, "cache_read_input_tokens": 100_000, "cache_creation_input_tokens": 2000,
                 "output_tokens": 500}  # fmt: skip
    chat = chat_usage(anthropic)
    assert chat["prompt_tokens"] == 102_050 and chat["completion_tokens"] == 500
    assert chat["prompt_tokens_details"] == {"cached_tokens": 100_000, "cache_write_tokens": 2000}
    assert messages_usage(chat) == anthropic
    assert answer_usage({"usage": anthropic}) == Usage(102_050, 500, cached_prompt_tokens=100_000)


def test_usage_that_is_missing_or_null_counts_nothing() -> None:
    assert answer_usage({"type": "message"}) is None
    nulls: dict[str, Any] = {"input_tokens": 3, "cache_read_input_tokens": None, "output_tokens": 2}
    assert answer_usage({"usage": nulls}) == Usage(3, 2)
    assert messages_usage({}) == {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                                  "output_tokens": 0}  # fmt: skip
