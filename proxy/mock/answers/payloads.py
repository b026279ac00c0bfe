"""The OpenAI-shaped bodies a mock provider answers with: pure functions from plain data to JSON.

Every answer names the mock that made it (`id` = "<kind>-<mock name>-<n>", `system_fingerprint`) and
echoes the `model` it received, so a test can tell which provider served and how the proxy rewrote
the request.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import struct
import time
from collections.abc import Sequence
from typing import Any

import orjson

from proxy.mock.settings import MockConfig

DONE = b"data: [DONE]\n\n"
CREATED = 1_700_000_000  # the `created` of every listed model

_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    402: ("insufficient_quota", "insufficient_quota"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout_error", "timeout"),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", "unprocessable_entity"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    529: ("overloaded_error", "overloaded"),
}


def error_body(status: int, message: str) -> bytes:
    """`{"error": {message, type, param, code}}` as OpenAI writes it."""
    kind, code = _ERROR_KINDS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


def sse(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


@functools.lru_cache(maxsize=64)
def reply_pieces(name: str, count: int) -> tuple[str, ...]:
    """The content of an answer, one piece per streamed chunk: "NAME#1 NAME#2 ..."."""
    return tuple(f"{name}#{i} " for i in range(1, count + 1))


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_completion(ident: str, model: str, name: str, content: str, tokens: dict[str, int]) -> bytes:
    message = {"role": "assistant", "content": content}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
    return orjson.dumps(_envelope(ident, "chat.completion", model, name, [choice]) | {"usage": tokens})


def chat_chunks(
    ident: str, model: str, name: str, pieces: Sequence[str], tokens: dict[str, int] | None
) -> list[bytes]:
    """Role chunk, one chunk per piece, finish chunk, usage chunk (if `tokens`), `[DONE]`."""
    extra = {"usage": None} if tokens is not None else {}

    def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse(_envelope(ident, "chat.completion.chunk", model, name, [choice]) | extra)

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in pieces]
    events.append(chunk({}, "stop"))
    if tokens is not None:
        events.append(sse(_envelope(ident, "chat.completion.chunk", model, name, []) | {"usage": tokens}))
    events.append(DONE)
    return events


def text_completion(ident: str, model: str, name: str, text: str, tokens: dict[str, int]) -> bytes:
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}
    return orjson.dumps(_envelope(ident, "text_completion", model, name, [choice]) | {"usage": tokens})


def completion_chunks(
    ident: str, model: str, name: str, pieces: Sequence[str], tokens: dict[str, int] | None
) -> list[bytes]:
    """One chunk per piece, finish chunk, usage chunk (if `tokens`), `[DONE]`."""

    def chunk(text: str, finish: str | None = None) -> bytes:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return sse(_envelope(ident, "text_completion", model, name, [choice]))

    events = [chunk(piece) for piece in pieces]
    events.append(chunk("", "stop"))
    if tokens is not None:
        events.append(sse(_envelope(ident, "text_completion", model, name, []) | {"usage": tokens}))
    events.append(DONE)
    return events


def embeddings(model: str, inputs: Sequence[str], dimensions: int, as_base64: bool) -> bytes:
    """One deterministic vector per input (the same text always gets the same vector)."""
    data = []
    for index, text in enumerate(inputs):
        vector = _vector(text, dimensions)
        packed = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": packed if as_base64 else vector})
    tokens = sum(len(text.split()) for text in inputs)
    body = {"object": "list", "data": data, "model": model}
    return orjson.dumps(body | {"usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def model_list(config: MockConfig) -> bytes:
    """GET /v1/models in the `openai` format, the `openrouter` one (prices per token, capabilities),
    or Together's bare array (prices per million tokens)."""
    if config.listing == "together":
        return orjson.dumps([_together_model(config, model_id) for model_id in config.models])
    entries = [_listed_model(config, model_id) for model_id in config.models]
    return orjson.dumps({"object": "list", "data": entries})


def _listed_model(config: MockConfig, model_id: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": model_id, "object": "model", "created": CREATED, "owned_by": config.name}
    if config.listing == "openrouter":
        entry["name"] = f"{config.name}: {model_id}"
        entry["context_length"] = config.context_length
        entry["pricing"] = {"prompt": config.pricing_prompt, "completion": config.pricing_completion}
        entry["top_provider"] = {
            "context_length": config.context_length,
            "max_completion_tokens": config.max_completion_tokens,
            "is_moderated": False,
        }
        modalities = list(config.input_modalities) if config.input_modalities is not None else ["text"]
        entry["architecture"] = {"input_modalities": modalities, "output_modalities": ["text"], "tokenizer": "Other"}
        if config.supported_parameters is not None:
            entry["supported_parameters"] = list(config.supported_parameters)
    return entry


def _together_model(config: MockConfig, model_id: str) -> dict[str, Any]:
    """An entry of Together's `GET /v1/models`: a bare array, `pricing` in USD per million tokens."""
    return {
        "id": model_id,
        "object": "model",
        "created": CREATED,
        "type": "chat",
        "display_name": model_id,
        "organization": config.name,
        "context_length": config.context_length,
        "pricing": {
            "hourly": 0,
            "input": float(config.pricing_prompt),
            "output": float(config.pricing_completion),
            "base": 0,
            "finetune": 0,
        },
    }


def _envelope(ident: str, kind: str, model: str, name: str, choices: list[Any]) -> dict[str, Any]:
    return {
        "id": ident,
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": f"mock-{name}",
        "choices": choices,
    }


def _vector(text: str, dimensions: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    raw = (seed * (dimensions // len(seed) + 1))[:dimensions]
    # multiples of 1/128 are exact in float32, so the base64 form decodes to the same numbers
    return [(byte - 128) / 128 for byte in raw]
