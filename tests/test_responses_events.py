"""The pure parts of the Responses API relay: which typed event carries output or a failure, the
tail that finds the terminal event's usage, and the multipart form whose `model` is rewritten."""

from __future__ import annotations

import httpx
import orjson
import pytest

from proxy.errors import BadRequest
from proxy.failover.form_request import parse_form
from proxy.upstream.responses_events import ResponsesTail, Verdict, event_verdict
from proxy.upstream.usage import Usage


@pytest.mark.parametrize(
    ("name", "data", "verdict"),
    [
        ("response.created", {"type": "response.created", "response": {"status": "in_progress"}}, Verdict.PENDING),
        ("response.in_progress", {"type": "response.in_progress"}, Verdict.PENDING),
        ("response.output_item.added", {"type": "response.output_item.added", "item": {}}, Verdict.PENDING),
        ("response.output_text.delta", {"type": "response.output_text.delta", "delta": ""}, Verdict.PENDING),
        ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Hi"}, Verdict.OUTPUT),
        (None, {"type": "response.function_call_arguments.delta", "delta": "{"}, Verdict.OUTPUT),
        ("response.output_item.done", {"type": "response.output_item.done"}, Verdict.OUTPUT),
        ("response.completed", {"type": "response.completed", "response": {"error": None}}, Verdict.OUTPUT),
        ("response.failed", {"type": "response.failed", "response": {}}, Verdict.FAILED),
        ("error", {"type": "error", "code": "rate_limit_exceeded"}, Verdict.FAILED),
        (None, {"error": {"message": "overloaded"}}, Verdict.FAILED),
    ],
)
def test_event_verdict(name: str | None, data: dict[str, object], verdict: Verdict) -> None:
    assert event_verdict(name, data) is verdict


def event(kind: str, **fields: object) -> bytes:
    return f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, **fields}) + b"\n\n"


def test_the_tail_finds_the_usage_of_a_large_completed_event_split_across_chunks() -> None:
    usage = {"input_tokens": 7, "output_tokens": 11, "total_tokens": 18}
    stream = event("response.output_text.delta", delta="x") + event(
        "response.completed", response={"output_text": "y" * 100_000, "usage": usage}
    )
    tail = ResponsesTail()
    for at in range(0, len(stream), 4096):
        tail.feed(stream[at : at + 4096])
    assert tail.done and not tail.failed and tail.usage() == Usage(7, 11)


def test_the_tail_marks_an_in_band_failure_as_a_failed_end() -> None:
    tail = ResponsesTail()
    tail.feed(event("response.output_text.delta", delta="x") + event("response.failed", response={}))
    assert tail.done and tail.failed and tail.usage() is None


def test_a_form_is_rewritten_without_touching_the_file() -> None:
    audio = b"--not-a-boundary\r\n" * 1000
    request = httpx.Request("POST", "http://x/", data={"model": "whisper-1"}, files={"file": ("a.wav", audio)})
    raw, content_type = request.read(), request.headers["content-type"].encode()
    form = parse_form(raw, content_type)
    rewritten = b"".join(form.encode_for("openai/whisper-large-v3"))
    assert form.model == "whisper-1"
    assert rewritten == raw.replace(b"whisper-1", b"openai/whisper-large-v3", 1)
    with pytest.raises(BadRequest, match="multipart/form-data"):
        parse_form(raw, b"application/json")
    no_model = httpx.Request("POST", "http://x/", files={"file": ("a.wav", audio)})
    with pytest.raises(BadRequest, match="model"):
        parse_form(no_model.read(), no_model.headers["content-type"].encode())


async def test_an_upload_is_read_into_one_buffer_never_held_twice() -> None:
    import tracemalloc

    from proxy.http.body import read_body

    size, piece = 8 * 1024 * 1024, 64 * 1024
    sent = 0

    async def receive() -> dict[str, object]:  # each piece a new object, as a server hands them over
        nonlocal sent
        sent += piece
        return {"type": "http.request", "body": bytes([sent // piece % 256]) * piece, "more_body": sent < size}

    headers = {b"content-length": str(size).encode()}
    tracemalloc.start()
    try:
        body = await read_body(receive, headers, 10 * size, 30.0, upload=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(body) == size and body[:piece] == b"\x01" * piece and body[-piece:] == b"\x80" * piece
    assert peak < 1.2 * size, f"peak {peak} bytes for a {size}-byte upload"


def test_a_transcript_stream_ends_with_its_done_event_or_done_marker() -> None:
    from proxy.upstream.responses_events import TranscriptTail

    delta = b'data: {"type":"transcript.text.delta","delta":"hi"}\n\n'
    usage = {"type": "tokens", "input_tokens": 3, "output_tokens": 1, "total_tokens": 4}
    done = b"data: " + orjson.dumps({"type": "transcript.text.done", "text": "hi", "usage": usage}) + b"\n\n"
    tail = TranscriptTail()
    tail.feed(delta)
    assert not tail.done
    tail.feed(done)
    assert tail.done and not tail.failed and tail.usage() == Usage(3, 1)
    marked = TranscriptTail()
    marked.feed(delta + b"data: [DONE]\n\n")
    assert marked.done and marked.usage() is None
