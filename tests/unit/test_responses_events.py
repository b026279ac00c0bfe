"""The pure parts of the Responses API relay: which typed event carries output or a failure (the
verdict's predicates for `/responses` and `/audio/transcriptions`), the watch that finds the terminal
event and its usage, and the multipart form whose `model` is rewritten."""

from __future__ import annotations

import httpx
import orjson
import pytest

from proxy.errors import BadRequest, EmptyAnswer, ErrorInAnswer
from proxy.failover.endpoints import PROXIED
from proxy.failover.form_request import parse_form
from proxy.failover.judge.verdict import FirstEvent, answer_failure, first_event_verdict
from proxy.upstream.responses_events import (
    MAX_TERMINAL_EVENT,
    TypedStreamWatch,
    Verdict,
    event_verdict,
    response_id_of,
)
from proxy.upstream.sse import SseFramer
from proxy.upstream.usage import Usage, stream_usage


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


def watched(stream: bytes, size: int = 4096, *, transcript: bool = False) -> TypedStreamWatch:
    watch = TypedStreamWatch(transcript=transcript)
    for at in range(0, len(stream), size):
        watch.feed(stream[at : at + size])
    watch.close()
    return watch


def first_verdicts(path: str, stream: bytes) -> list[FirstEvent]:
    """The verdicts, event by event, of the endpoint at `/v1{path}` (its row's output predicate)."""
    output = PROXIED[("POST", "/v1" + path)].events.output
    return [first_event_verdict(output, e) for e in SseFramer().feed(stream)]


def test_a_responses_stream_commits_on_its_first_output_through_the_verdicts_table() -> None:
    created = event("response.created", response={"id": "resp_1", "status": "in_progress"})
    stream = created + event("response.output_item.added", item={}) + event("response.output_text.delta", delta="Hi")
    assert first_verdicts("/responses", stream) == [FirstEvent.HOLD, FirstEvent.HOLD, FirstEvent.OUTPUT]
    assert response_id_of(created + b": keep-alive\n\n") == "resp_1"
    with pytest.raises(ErrorInAnswer, match="server_error"):
        first_verdicts("/responses", created + event("response.failed", response={"error": {"code": "server_error"}}))
    with pytest.raises(ErrorInAnswer, match="rate_limit_exceeded"):
        first_verdicts("/responses", event("error", code="rate_limit_exceeded", message="slow down"))


def test_a_transcript_stream_commits_on_a_non_empty_delta() -> None:
    delta = b'data: {"type":"transcript.text.delta","delta":"hi"}\n\n'
    empty = b'data: {"type":"transcript.text.delta","delta":""}\n\n'
    assert first_verdicts("/audio/transcriptions", empty + delta) == [FirstEvent.HOLD, FirstEvent.OUTPUT]
    with pytest.raises(ErrorInAnswer):
        first_verdicts("/audio/transcriptions", b'data: {"type":"error","message":"bad audio"}\n\n')
    with pytest.raises(EmptyAnswer):
        first_verdicts("/audio/transcriptions", empty + b"data: [DONE]\n\n")


def test_moderations_and_images_without_their_list_are_no_answer() -> None:
    assert isinstance(answer_failure(PROXIED[("POST", "/v1" + "/moderations")].check, {"id": "modr-1", "results": []}), EmptyAnswer)
    assert answer_failure(PROXIED[("POST", "/v1" + "/moderations")].check, {"id": "modr-1", "results": [{"flagged": False}]}) is None
    assert isinstance(answer_failure(PROXIED[("POST", "/v1" + "/images/generations")].check, {"created": 1, "data": []}), EmptyAnswer)
    assert answer_failure(PROXIED[("POST", "/v1" + "/images/generations")].check, {"created": 1, "data": [{"url": "http://x/1.png"}]}) is None


def test_the_watch_finds_the_usage_of_a_large_completed_event_split_across_chunks() -> None:
    usage = {"input_tokens": 7, "output_tokens": 11, "total_tokens": 18}
    stream = event("response.output_text.delta", delta="x") + event(
        "response.completed", response={"output_text": "y" * 100_000, "usage": usage}
    )
    watch = watched(stream)
    assert watch.done and not watch.provider_error and stream_usage(watch) == Usage(7, 11)


def test_the_watch_marks_an_in_band_failure_as_a_failed_end() -> None:
    watch = watched(event("response.output_text.delta", delta="x") + event("response.failed", response={}))
    assert watch.done and watch.provider_error and watch.usage is None


def test_a_stream_cut_before_its_terminal_event_is_not_done() -> None:
    watch = watched(event("response.output_text.delta", delta="x") + b'event: response.completed\ndata: {"ty')
    assert not watch.done and not watch.complete and watch.unterminated


def test_a_terminal_event_too_large_to_keep_is_judged_by_its_head() -> None:
    big = event("response.completed", response={"output_text": "y" * (MAX_TERMINAL_EVENT + 10)})
    watch = watched(event("response.output_text.delta", delta="x") + big, size=64 * 1024)
    assert watch.done and not watch.provider_error and watch.usage is None


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
    delta = b'data: {"type":"transcript.text.delta","delta":"hi"}\n\n'
    usage = {"type": "tokens", "input_tokens": 3, "output_tokens": 1, "total_tokens": 4}
    done = b"data: " + orjson.dumps({"type": "transcript.text.done", "text": "hi", "usage": usage}) + b"\n\n"
    watch = TypedStreamWatch(transcript=True)
    watch.feed(delta)
    assert not watch.done
    watch.feed(done)
    assert watch.done and not watch.provider_error and stream_usage(watch) == Usage(3, 1)
    marked = watched(delta + b"data: [DONE]\n\n", transcript=True)
    assert marked.done and marked.usage is None
