"""A stream of one API translated into the other's as it comes (`proxy.dialects.chat_stream`,
`proxy.dialects.messages_stream`), read back by each API's official SDK: recorded streams in,
whatever the network's cuts, the answer the client's SDK assembles out."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import httpx2
import openai
import orjson
import pytest

from proxy.dialects.chat_stream import ChatFromMessages
from proxy.dialects.messages_stream import MessagesFromChat
from proxy.dialects.relaying import NativeMessages, StreamTranslation
from proxy.errors import StreamBroken
from proxy.upstream.sse import SseFramer
from tests.dialect_fixtures import (
    ANTHROPIC_BASIC,
    ANTHROPIC_ERROR_EVENT,
    ANTHROPIC_THINKING,
    ANTHROPIC_TOOL,
    DEEPSEEK_REASONING,
    OPENAI_TOOL,
    pieces,
)

SIZES = (1, 7, 64, 100_000)


def translate(translation: StreamTranslation, upstream: bytes, size: int) -> bytes:
    """What the relay sends: each read as translated, then the end of a complete stream."""
    out = b"".join(translation.feed(piece) for piece in pieces(upstream, size))
    return out + translation.finish(unterminated=False)


def sse_payloads(stream: bytes) -> list[Any]:
    framer = SseFramer()
    events = framer.feed(stream) + framer.close()
    return [orjson.loads(e.data) for e in events if e.data is not None and e.data != b"[DONE]"]


def answered_by(body: bytes) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(200, headers={"content-type": "text/event-stream"},
                                                              content=body))  # fmt: skip


def chat_final(stream: bytes) -> Any:
    """The completion the openai SDK's stream helper assembles from these bytes."""
    http = httpx.Client(transport=answered_by(stream))
    client = openai.OpenAI(api_key="k", base_url="http://provider.test/v1", http_client=http, max_retries=0)
    with client, client.chat.completions.stream(model="m", messages=[{"role": "user", "content": "hi"}]) as reading:
        return reading.get_final_completion()


def messages_final(stream: bytes) -> Any:
    """The message the anthropic SDK's `messages.stream` assembles from these bytes."""
    transport = httpx2.MockTransport(
        lambda request: httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=stream)
    )
    client = anthropic.Anthropic(api_key="k", http_client=httpx2.Client(transport=transport), max_retries=0)
    with client.messages.stream(model="m", max_tokens=9, messages=[{"role": "user", "content": "hi"}]) as reading:
        return reading.get_final_message()


@pytest.mark.parametrize("size", SIZES)
def test_a_recorded_anthropic_stream_reads_as_a_chat_completion(size: int) -> None:
    stream = translate(ChatFromMessages(include_usage=True), ANTHROPIC_BASIC, size)
    completion = chat_final(stream)
    choice = completion.choices[0]
    assert choice.message.content == "Hello there!" and choice.finish_reason == "stop"
    assert completion.usage.prompt_tokens == 11 and completion.usage.completion_tokens == 6
    assert completion.id == "msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK" and completion.model == "claude-3-opus-latest"
    assert stream.endswith(b"data: [DONE]\n\n")


def test_the_translation_does_not_depend_on_how_the_stream_was_cut() -> None:
    def without_time(stream: bytes) -> list[Any]:
        return [{k: v for k, v in p.items() if k != "created"} for p in sse_payloads(stream)]

    outputs = {size: without_time(translate(ChatFromMessages(True), ANTHROPIC_TOOL, size)) for size in SIZES}
    assert all(output == outputs[SIZES[-1]] for output in outputs.values())
    outputs = {size: sse_payloads(translate(MessagesFromChat(), OPENAI_TOOL, size)) for size in SIZES}
    assert all(output == outputs[SIZES[-1]] for output in outputs.values())


def test_an_anthropic_tool_call_streams_as_chat_tool_call_deltas() -> None:
    completion = chat_final(translate(ChatFromMessages(include_usage=True), ANTHROPIC_TOOL, 64))
    message = completion.choices[0].message
    assert message.content == "Okay, let's check the weather for San Francisco, CA:"
    (call,) = message.tool_calls
    assert call.id == "toolu_01T1x1fJ34qAmk2tNTrN7Up6" and call.function.name == "get_weather"
    assert orjson.loads(call.function.arguments) == {"location": "San Francisco, CA"}
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage.prompt_tokens == 472 and completion.usage.completion_tokens == 89


def test_thinking_streams_as_reasoning_content() -> None:
    chunks = sse_payloads(translate(ChatFromMessages(), ANTHROPIC_THINKING, 64))
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks if c["choices"])
    assert reasoning.startswith("I need to find the GCD of 1071 and 462") and reasoning.endswith("= 21.")
    assert chat_final(translate(ChatFromMessages(), ANTHROPIC_THINKING, 64)).choices[0].message.content == (
        "The greatest common divisor of 1071 and 462 is **21**."
    )
    assert not any("usage" in c for c in chunks)  # the client did not ask for it


@pytest.mark.parametrize("size", SIZES)
def test_a_recorded_chat_tool_call_reads_as_an_anthropic_tool_use(size: int) -> None:
    message = messages_final(translate(MessagesFromChat(), OPENAI_TOOL, size))
    (block,) = message.content
    assert block.type == "tool_use" and block.id == "call_PieqNSej6kM9hgYbcQdbZSaC" and block.name == "get_weather"
    assert block.input == {"location": "Tokyo"}
    assert message.stop_reason == "tool_use" and message.model == "gpt-4.1-nano-2025-04-14"
    assert message.usage.input_tokens == 67 and message.usage.output_tokens == 31


def test_recorded_reasoning_reads_as_a_thinking_block_then_text() -> None:
    message = messages_final(translate(MessagesFromChat(), DEEPSEEK_REASONING, 7))
    thinking, text = message.content
    assert thinking.type == "thinking" and thinking.thinking == "\u597d\u7684\uff0c"
    assert text.type == "text" and text.text == "\u7eb1\uff01"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 6 and message.usage.output_tokens == 1552


def test_each_block_is_opened_and_closed_in_order() -> None:
    kinds = [(p["type"], p.get("index")) for p in sse_payloads(translate(MessagesFromChat(), DEEPSEEK_REASONING, 64))]
    assert kinds == [
        ("message_start", None),
        ("content_block_start", 0), ("content_block_delta", 0), ("content_block_delta", 0), ("content_block_stop", 0),
        ("content_block_start", 1), ("content_block_delta", 1), ("content_block_delta", 1), ("content_block_stop", 1),
        ("message_delta", None), ("message_stop", None),
    ]  # fmt: skip


def test_an_error_chunk_becomes_an_anthropic_error_event_the_sdk_raises() -> None:
    # OpenRouter's error inside a stream (the body proxy.failover.judge.verdict quotes), after some output
    upstream = OPENAI_TOOL.split(b"\n\n")[0] + b'\n\ndata: {"error": {"message": "Provider returned error", "code": 502}}\n\n'
    translation = MessagesFromChat()
    stream = translation.feed(upstream)
    assert b"event: error\n" in stream and b"Provider returned error" in stream
    with pytest.raises(anthropic.APIStatusError, match="Provider returned error"):
        messages_final(stream)


def test_an_anthropic_error_event_becomes_the_chat_error_the_sdk_raises() -> None:
    head = ANTHROPIC_BASIC.split(b"\n\n")[0] + b"\n\n"
    stream = ChatFromMessages().feed(head + ANTHROPIC_ERROR_EVENT)
    assert sse_payloads(stream)[-1] == {"error": {"message": "Overloaded", "type": "overloaded_error", "code": None,
                                                  "param": None}}  # fmt: skip
    with pytest.raises(openai.APIError, match="Overloaded"):
        chat_final(stream)


def test_a_broken_stream_ends_with_the_clients_own_error() -> None:
    broken = StreamBroken("the provider's stream ended before it was complete")
    event = NativeMessages().failed(broken)
    assert sse_payloads(event) == [{"type": "error", "error": {"type": "api_error", "message": broken.message}}]
    assert sse_payloads(MessagesFromChat().failed(broken))[0]["error"]["type"] == "api_error"
    assert sse_payloads(ChatFromMessages().failed(broken))[0]["error"]["code"] == "stream_broken"


def test_a_native_stream_that_lost_only_its_message_stop_is_ended_for_the_client() -> None:
    without_stop = ANTHROPIC_BASIC[: ANTHROPIC_BASIC.index(b"event: message_stop")]
    ending = NativeMessages().finish(unterminated=False)
    message = messages_final(without_stop + ending)
    assert message.content[0].text == "Hello there!" and message.stop_reason == "end_turn"
