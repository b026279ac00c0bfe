"""The verdict on a 200 (`proxy.failover.judge.verdict`): an answer, an error, or nothing yet."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proxy.errors import EmptyAnswer, ErrorInAnswer, MalformedResponse
from proxy.failover.endpoints import PROXIED
from proxy.failover.judge.verdict import (
    AnswerCheck,
    FirstEvent,
    OutputPredicate,
    answer_failure,
    chat_output,
    expected_choices,
    first_event_verdict,
    stream_event_outcome,
)
from proxy.upstream.sse import SseEvent
from tests.scripted_provider import completion


def check(path: str) -> AnswerCheck | None:
    """The answer check of the endpoint at `/v1{path}` (the endpoint table's)."""
    return PROXIED[("POST", "/v1" + path)].check


def output(path: str) -> OutputPredicate:
    return PROXIED[("POST", "/v1" + path)].events.output


def event(payload: Any, name: bytes | None = None) -> SseEvent:
    data = payload if isinstance(payload, bytes) or payload is None else orjson.dumps(payload)
    return SseEvent(data, name, 0)


def chunk(**delta: Any) -> dict[str, Any]:
    finish = delta.pop("finish_reason", None)
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "Provider returned error", "code": 502}},  # OpenRouter, in a 200
        {"error": "model overloaded"},
        {"object": "error", "message": "The model `x` does not exist.", "type": "NotFoundError", "code": 404},  # vLLM
        {"detail": "Internal Server Error"},  # FastAPI
    ],
)
def test_an_error_in_a_200_is_a_failed_attempt(body: Any) -> None:
    assert isinstance(answer_failure(check("/chat/completions"), body), ErrorInAnswer)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/chat/completions", {"id": "x", "choices": None}),
        ("/chat/completions", {"id": "x", "choices": []}),
        ("/chat/completions", {"id": "x"}),
        ("/chat/completions", {"id": "x", "choices": [{"index": 0, "finish_reason": "stop"}]}),
        ("/completions", {"id": "x", "choices": [{"index": 0}]}),
        ("/embeddings", {"object": "list", "data": []}),
        ("/embeddings", {"object": "list", "data": None}),
    ],
)
def test_a_200_without_an_answer_is_a_failed_attempt(path: str, body: Any) -> None:
    assert isinstance(answer_failure(check(path), body), EmptyAnswer)


def test_real_answers_pass() -> None:
    assert answer_failure(check("/chat/completions"), completion()) is None
    assert answer_failure(check("/completions"), {"choices": [{"text": "", "index": 0}]}) is None
    assert answer_failure(check("/embeddings"), {"data": [{"embedding": [0.1]}]}) is None
    assert isinstance(answer_failure(check("/chat/completions"), [1, 2]), MalformedResponse)


@pytest.mark.parametrize(
    "payload",
    [
        chunk(role="assistant", content=""),  # role-only first chunk
        chunk(),  # empty delta
        {"choices": [], "prompt_filter_results": [{"prompt_index": 0}]},  # Azure content-filter preamble
        {"type": "ping"},
        chunk(content=None, tool_calls=[]),
    ],
)
def test_chunks_without_output_are_held(payload: Any) -> None:
    assert first_event_verdict(output("/chat/completions"), event(payload)) is FirstEvent.HOLD


@pytest.mark.parametrize(
    "payload",
    [
        chunk(content="Hi"),
        chunk(reasoning="thinking"),
        chunk(reasoning_content="thinking"),
        chunk(tool_calls=[{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}]),
        chunk(refusal="no"),
        chunk(audio={"id": "a", "data": "AAAA"}),
        chunk(finish_reason="stop"),
        {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 0}},
        {"choices": [{"index": 0, "text": "Hi", "finish_reason": None}]},  # text completion
    ],
)
def test_output_commits(payload: Any) -> None:
    assert first_event_verdict(output("/chat/completions"), event(payload)) is FirstEvent.OUTPUT


def test_comments_and_pings_are_held() -> None:
    assert first_event_verdict(output("/chat/completions"), event(None)) is FirstEvent.HOLD
    assert first_event_verdict(output("/chat/completions"), event(None, b"ping")) is FirstEvent.HOLD


def test_failures_before_output() -> None:
    with pytest.raises(ErrorInAnswer):
        first_event_verdict(output("/chat/completions"), event({"error": {"message": "Provider returned error"}}))
    with pytest.raises(ErrorInAnswer):
        first_event_verdict(output("/chat/completions"), event(chunk(finish_reason="error")))
    with pytest.raises(EmptyAnswer):
        first_event_verdict(output("/chat/completions"), event(b"[DONE]"))
    with pytest.raises(MalformedResponse):
        first_event_verdict(output("/chat/completions"), event(b"{not json"))


def test_an_endpoint_with_typed_events_has_its_own_output_predicate() -> None:
    typed = event({"type": "response.output_text.delta", "delta": "x"}, b"response.output_text.delta")
    assert first_event_verdict(output("/responses"), typed) is FirstEvent.OUTPUT  # the Responses API's rule
    assert first_event_verdict(chat_output, typed) is FirstEvent.HOLD  # chat rules see no choices in it
    assert first_event_verdict(lambda name, payload: name == b"response.output_text.delta", typed) is FirstEvent.OUTPUT


def test_stream_event_outcome() -> None:
    assert stream_event_outcome(chunk(content="x")) == (False, (), None)
    assert stream_event_outcome(chunk(finish_reason="stop")) == (False, (0,), None)
    assert stream_event_outcome({"error": {"message": "boom"}}) == (True, (), None)
    assert stream_event_outcome(chunk(finish_reason="error")) == (True, (0,), None)


def test_expected_choices_is_n() -> None:
    assert expected_choices({}) == 1
    assert expected_choices({"n": 3}) == 3
    assert expected_choices({"n": "3"}) == 1
    assert expected_choices({"n": True}) == 1


# --- answers by kind: errors and finishes wherever an answer carries them ----------------------------------------

# OpenRouter's mid-stream error, inside the choice (openrouter.ai/docs/api-reference/streaming, "Handling Errors
# During Streaming"; the choice's `error` field: api.koog.ai OpenRouterStreamChoice)
OPENROUTER_CHOICE_ERROR = {
    "id": "gen-1", "object": "chat.completion", "model": "openai/gpt-4o", "provider": "OpenAI",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "error",
                 "native_finish_reason": "error", "error": {"code": 502, "message": "Network connection lost."}}],
}


@pytest.mark.parametrize(
    "body",
    [
        OPENROUTER_CHOICE_ERROR,
        # the same error with a finish reason that says nothing: the choice's own `error` decides
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": "partial"}, "finish_reason": "stop",
                      "error": {"code": 502, "message": "Network connection lost."}}]},
        # a finish reason that means error: vLLM's `abort` (github.com/vllm-project/vllm/issues/57082)
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": "par"}, "finish_reason": "abort"}]},
        # MiniMax: HTTP 200 with its own status envelope (github.com/adrianlyjak/obsidian-aloud-tts/pull/114,
        # github.com/OvidijusParsiunas/deep-chat component/src/types/miniMaxResult.ts)
        {"id": "x", "choices": None, "base_resp": {"status_code": 1008, "status_msg": "insufficient balance"}},
        # a vendor's status envelope without an answer: SiliconFlow-style code + message, success false, errors list
        {"code": 20015, "message": "The parameter is invalid. Please check again.", "data": None},
        {"result": None, "success": False, "errors": [{"code": 5006, "message": "model not found"}], "messages": []},
        {"status": "error", "msg": "internal error"},
    ],
)
def test_an_error_anywhere_in_a_200_is_a_failed_attempt(body: Any) -> None:
    assert isinstance(answer_failure(check("/chat/completions"), body), ErrorInAnswer)


@pytest.mark.parametrize(
    "body",
    [
        {**completion(), "base_resp": {"status_code": 0, "status_msg": ""}},  # MiniMax's success envelope
        {"id": "resp_1", "object": "response", "status": "completed", "error": None, "output": [{"type": "message"}]},
        {"object": "list", "data": [{"embedding": [0.1]}], "code": 0, "message": "success"},
    ],
)
def test_envelopes_that_say_success_are_answers(body: Any) -> None:
    assert answer_failure(check("/chat/completions") if "base_resp" in body else None, body) is None


def test_a_finish_reason_that_is_not_a_string_is_no_finish_and_no_error() -> None:
    odd = {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": {"type": "stop"}}
    assert answer_failure(check("/chat/completions"), {"choices": [odd]}) is None
    assert isinstance(answer_failure(check("/chat/completions"), {"choices": [{**odd, "finish_reason": "ERROR"}]}), ErrorInAnswer)


def test_an_error_inside_a_stream_choice_fails_before_commit() -> None:
    chunk_with_error = {"object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"content": ""}, "finish_reason": None, "error": {"message": "Provider disconnected"}}]}
    with pytest.raises(ErrorInAnswer, match="Provider disconnected"):
        first_event_verdict(output("/chat/completions"), event(chunk_with_error))
    with pytest.raises(ErrorInAnswer, match="MALFORMED_FUNCTION_CALL"):
        first_event_verdict(output("/chat/completions"), event(chunk(finish_reason="MALFORMED_FUNCTION_CALL")))
    with pytest.raises(ErrorInAnswer, match="insufficient balance"):
        first_event_verdict(output("/chat/completions"), event(
            {"choices": [], "base_resp": {"status_code": 1008, "status_msg": "insufficient balance"}}))


def test_a_finish_reason_is_a_non_empty_string() -> None:
    # Ollama and SGLang put `"finish_reason": ""` in every chunk (github.com/ollama/ollama/issues/4357,
    # github.com/sgl-project/sglang/issues/3912): it finishes nothing and is not output
    assert first_event_verdict(output("/chat/completions"), event(chunk(role="assistant", finish_reason=""))) is FirstEvent.HOLD
    assert stream_event_outcome(chunk(content="x", finish_reason="")) == (False, (), None)
    # Google's compatible API puts the real one in `finishReason` (github.com/jakobdylanc/llmcord/issues/84)
    google = {"choices": [{"index": 0, "delta": {}, "finish_reason": None, "finishReason": "stop"}]}
    assert stream_event_outcome(google) == (False, (0,), None)


def test_usage_is_read_wherever_the_provider_put_it() -> None:
    groq = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "x_groq": {"id": "req_01", "usage": {"prompt_tokens": 23, "completion_tokens": 19}}}
    moonshot = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop",
                             "usage": {"prompt_tokens": 19, "completion_tokens": 13, "total_tokens": 32}}]}
    assert stream_event_outcome(groq).usage == {"prompt_tokens": 23, "completion_tokens": 19}
    assert stream_event_outcome(moonshot).usage == {"prompt_tokens": 19, "completion_tokens": 13, "total_tokens": 32}
    assert stream_event_outcome([{"error": {"code": 429, "message": "Resource exhausted"}}]).error  # Google's list
