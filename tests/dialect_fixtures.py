"""Recorded streams of both APIs, for the translation tests (each with its source).

Anthropic streams are kept as the bytes their source shows; OpenAI-compatible ones as the chunks
their source recorded, written out as `data:` events the way providers send them.
"""

from __future__ import annotations

from typing import Any

import orjson

# anthropics/anthropic-sdk-python tests/lib/streaming/fixtures/basic_response.txt (recorded from the API;
# the file ends without a blank line after `message_stop`, kept so).
ANTHROPIC_BASIC = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK",'
    b'"type":"message","role":"assistant","content":[],"model":"claude-3-opus-latest","stop_reason":null,'
    b'"stop_sequence":null,"usage":{"input_tokens":11,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    b'event: ping\ndata: {"type": "ping"}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there"}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
    b'"usage":{"output_tokens":6}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}'
)


def _events(*pairs: tuple[str, str]) -> bytes:
    return b"".join(f"event: {name}\ndata: {data}\n\n".encode() for name, data in pairs)


_TEXT = ["Okay", ",", " let", "'s", " check", " the", " weather", " for", " San", " Francisco", ",", " CA", ":"]
_ARGS = ["", '{\\"location\\":', ' \\"San', " Francisc", "o,", ' CA\\"}']
# https://platform.claude.com/docs/en/build-with-claude/streaming, "Streaming request with tool use" (Response).
ANTHROPIC_TOOL = _events(
    ("message_start", '{"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message",'
                      '"role":"assistant","model":"claude-opus-4-8","stop_sequence":null,"usage":{"input_tokens":472,'
                      '"output_tokens":2},"content":[],"stop_reason":null}}'),
    ("content_block_start", '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'),
    ("ping", '{"type": "ping"}'),
    *(("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"' + t + '"}}')
      for t in _TEXT),
    ("content_block_stop", '{"type":"content_block_stop","index":0}'),
    ("content_block_start", '{"type":"content_block_start","index":1,"content_block":{"type":"tool_use",'
                            '"id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}'),
    *(("content_block_delta",
       '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"' + a + '"}}')
      for a in _ARGS),
    ("content_block_stop", '{"type":"content_block_stop","index":1}'),
    ("message_delta", '{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
                      '"usage":{"output_tokens":89}}'),
    ("message_stop", '{"type":"message_stop"}'),
)  # fmt: skip
# https://platform.claude.com/docs/en/build-with-claude/streaming, "Streaming request with extended thinking".
ANTHROPIC_THINKING = _events(
    ("message_start", '{"type": "message_start", "message": {"id": "msg_01...", "type": "message", "role": '
                      '"assistant", "content": [], "model": "claude-opus-4-8", "stop_reason": null, '
                      '"stop_sequence": null}}'),
    ("content_block_start", '{"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", '
                            '"thinking": "", "signature": ""}}'),
    ("content_block_delta", '{"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", '
                            '"thinking": "I need to find the GCD of 1071 and 462 using the Euclidean algorithm.\\n\\n'
                            '1071 = 2 \u00d7 462 + 147"}}'),
    ("content_block_delta", '{"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", '
                            '"thinking": "\\n462 = 3 \u00d7 147 + 21"}}'),
    ("content_block_delta", '{"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", '
                            '"thinking": "\\n147 = 7 \u00d7 21 + 0"}}'),
    ("content_block_delta", '{"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", '
                            '"thinking": "\\nThe remainder is 0, so GCD(1071, 462) = 21."}}'),
    ("content_block_delta", '{"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", '
                            '"signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."}}'),
    ("content_block_stop", '{"type": "content_block_stop", "index": 0}'),
    ("content_block_start", '{"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}'),
    ("content_block_delta", '{"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", '
                            '"text": "The greatest common divisor of 1071 and 462 is **21**."}}'),
    ("content_block_stop", '{"type": "content_block_stop", "index": 1}'),
    ("message_delta", '{"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}}'),
    ("message_stop", '{"type": "message_stop"}'),
)  # fmt: skip
# https://platform.claude.com/docs/en/build-with-claude/streaming, "Error events".
ANTHROPIC_ERROR_EVENT = b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n'


def chat_stream(chunks: list[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def _nano(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-BQb0iSFzE1zz1OVhaqg3u2Yqn1Ezf",
        "choices": [{"delta": {"content": None, "function_call": None, "refusal": None, "role": None,
                               "tool_calls": None, **delta}, "finish_reason": finish, "index": 0, "logprobs": None}],
        "created": 1745678496, "model": "gpt-4.1-nano-2025-04-14", "object": "chat.completion.chunk",
        "service_tier": "default", "system_fingerprint": "fp_eede8f0d45", "usage": None,
    }  # fmt: skip


def _argument(piece: str) -> dict[str, Any]:
    return {"tool_calls": [{"index": 0, "id": None, "function": {"arguments": piece, "name": None}, "type": None}]}


# gpt-4.1-nano calling a tool, as recorded in alexbrowng/aiomodels
# tests/openai/chat_completion_chunks/get_weather.py (with stream_options.include_usage).
OPENAI_TOOL = chat_stream([
    _nano({"role": "assistant"}),
    _nano({"tool_calls": [{"index": 0, "id": "call_PieqNSej6kM9hgYbcQdbZSaC",
                           "function": {"arguments": "", "name": "get_weather"}, "type": "function"}]}),
    *(_nano(_argument(piece)) for piece in ('{"lo', "catio", 'n": "T', "okyo", '"}')),
    _nano({}, "tool_calls"),
    {**_nano({}), "choices": [], "usage": {
        "completion_tokens": 31, "prompt_tokens": 67, "total_tokens": 98,
        "completion_tokens_details": {"accepted_prediction_tokens": 0, "audio_tokens": 0, "reasoning_tokens": 0,
                                      "rejected_prediction_tokens": 0},
        "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 0}}},
])  # fmt: skip


def _reasoner(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "0e9642e9-9af6-4eb1-9c13-8c90d6b13ef3", "object": "chat.completion.chunk", "created": 1764042665,
        "model": "deepseek-reasoner", "system_fingerprint": "fp_ffc7281d48_prod0820_fp8_kvcache",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra,
    }  # fmt: skip


# deepseek-reasoner reasoning, then answering, as recorded in CaiZongyuan/agentscope-nextjs-ai-demo
# backend/docs/example-completions.md (the chunks it shows; the recording elides the ones between).
DEEPSEEK_REASONING = chat_stream([
    _reasoner({"role": "assistant", "content": None, "reasoning_content": ""}),
    _reasoner({"content": None, "reasoning_content": "\u597d\u7684"}),
    _reasoner({"content": None, "reasoning_content": "\uff0c"}),
    _reasoner({"content": "\u7eb1", "reasoning_content": None}),
    _reasoner({"content": "\uff01", "reasoning_content": None}),
    _reasoner({"content": "", "reasoning_content": None}, "stop", usage={
        "prompt_tokens": 6, "completion_tokens": 1552, "total_tokens": 1558, "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 199}, "prompt_cache_hit_tokens": 0,
        "prompt_cache_miss_tokens": 6}),
])  # fmt: skip


def pieces(data: bytes, size: int) -> list[bytes]:
    """`data` cut into reads of `size` bytes (the network may cut a stream anywhere)."""
    return [data[i : i + size] for i in range(0, len(data), size)]
