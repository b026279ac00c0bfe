"""The SSE reader (`proxy.upstream.sse`): the same bytes give the same events and the same verdict
whatever the network segmentation; `[DONE]` only as its own event; comments are not progress."""

from __future__ import annotations

import orjson
import pytest

from proxy.failover.judge.verdict import stream_event_outcome
from proxy.upstream.sse import MAX_WATCHED_EVENT, SseEvent, SseFramer, StreamWatch, is_done, parse_event
from tests.scripted_provider import DONE, chunk, event, usage_chunk

STREAM = (
    b": OPENROUTER PROCESSING\n\n"
    + b"event: ping\n\n"
    + chunk(role="assistant", content="")
    + chunk("Hel")
    + chunk("lo", finish="stop")
    + usage_chunk(3, 2)
    + DONE
)


def frame(pieces: list[bytes]) -> list[SseEvent]:
    framer = SseFramer()
    events = [e for piece in pieces for e in framer.feed(piece)]
    return events + framer.close()


def cuts(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, 64, 10_000])
def test_framing_does_not_depend_on_segmentation(size: int) -> None:
    assert frame(cuts(STREAM, size)) == frame([STREAM])


def test_events_carry_data_name_and_end_offset() -> None:
    events = frame([STREAM])
    assert events[0] == SseEvent(None, None, len(b": OPENROUTER PROCESSING\n\n"))
    assert events[1].name == b"ping" and events[1].data is None
    assert orjson.loads(events[3].data or b"")["choices"][0]["delta"]["content"] == "Hel"
    assert is_done(events[-1].data) and events[-1].end == len(STREAM)


@pytest.mark.parametrize("ending", [b"\r\n", b"\r"])
def test_every_line_ending_frames_the_same(ending: bytes) -> None:
    converted = STREAM.replace(b"\n", ending)
    expected = [(e.data, e.name) for e in frame([STREAM])]
    for size in (1, 2, 5, 1000):
        assert [(e.data, e.name) for e in frame(cuts(converted, size))] == expected


def test_multi_line_data_joins_and_one_space_is_dropped() -> None:
    assert parse_event(b"data:  a\ndata:b\nid: 7").data == b" a\nb"


def test_an_unterminated_last_event_counts_at_the_end() -> None:
    events = frame([chunk("x", finish="stop").rstrip(b"\n")])
    assert len(events) == 1 and events[0].data is not None


def test_done_is_only_an_event_of_its_own() -> None:
    assert is_done(b"[DONE]")
    assert not is_done(b'{"content": "data: [DONE]"}')
    assert not is_done(None)


def watch(pieces: list[bytes]) -> tuple[StreamWatch, list[bool]]:
    w = StreamWatch(stream_event_outcome)
    progress = [w.feed(p) for p in pieces]
    w.close()
    return w, progress


@pytest.mark.parametrize("size", [1, 5, 13, 100_000])
def test_watch_sees_done_finish_and_usage_in_any_segmentation(size: int) -> None:
    w, _ = watch(cuts(STREAM, size))
    assert w.done and not w.provider_error
    assert w.finished == {0}
    assert w.usage == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_done_inside_content_text_does_not_end_the_stream() -> None:
    w, _ = watch([chunk("the marker is \ndata: [DONE]\n\n in text"), chunk("more")])
    assert not w.done


def test_comments_are_not_progress_but_data_is() -> None:
    _, progress = watch([b": keep-alive\n\n", b": OPENROUTER PROCESSING\n\n", chunk("x")])
    assert progress == [False, False, True]


def test_a_large_event_arriving_in_pieces_is_progress() -> None:
    big = chunk("x" * 50_000)
    _, progress = watch(cuts(big, 16_384))
    assert all(progress)


def test_in_band_errors_are_seen() -> None:
    error = b'data: {"error": {"message": "upstream overloaded", "code": 502}}\n\n'
    assert watch([chunk("a"), error])[0].provider_error
    assert watch([chunk("a"), chunk(finish="error")])[0].provider_error
    assert not watch([chunk('the word "error" in quotes'), chunk("b")])[0].provider_error


def test_an_event_too_large_to_inspect_is_skipped_not_buffered() -> None:
    huge = b'data: {"error": "' + b"x" * (MAX_WATCHED_EVENT + 10) + b'"}\n\n'
    w, _ = watch([*cuts(huge, 65_536), chunk("after", finish="stop"), DONE])
    assert not w.provider_error  # too large to judge: relayed unjudged
    assert w.done and w.finished == {0}


def two_choice_chunk(index: int, finish: str | None) -> bytes:
    choice = {"index": index, "delta": {"content": "x"}, "finish_reason": finish}
    return b"data: " + orjson.dumps({"object": "chat.completion.chunk", "choices": [choice]}) + b"\n\n"


def test_complete_means_every_expected_choice_finished() -> None:
    w = StreamWatch(stream_event_outcome, choices=2)
    for piece in (two_choice_chunk(0, None), two_choice_chunk(1, None), two_choice_chunk(0, "stop")):
        w.feed(piece)
    w.close()
    assert not w.complete
    both = StreamWatch(stream_event_outcome, choices=2)
    for piece in (two_choice_chunk(0, "stop"), *(chunk("filler") for _ in range(5)), two_choice_chunk(1, "length")):
        both.feed(piece)
    both.close()
    assert both.complete and both.finished == {0, 1}


def test_a_body_that_ends_inside_its_last_event_is_judged_and_reported_unterminated() -> None:
    w = StreamWatch(stream_event_outcome)
    w.feed(chunk("x"))
    w.feed(chunk(finish="stop").rstrip(b"\n"))
    assert w.unterminated
    w.close()
    assert w.unterminated and w.complete


# --- answers by kind: the end of a stream, its usage, a leading byte-order mark ---------------------------------

BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("split", [0, 1, 2, 3, 5])
def test_one_leading_byte_order_mark_is_ignored_wherever_the_network_cuts_it(split: int) -> None:
    stream = BOM + STREAM
    pieces = [stream[:split], stream[split:]] if split else [stream]
    assert frame(pieces) == frame([STREAM])


def test_only_one_leading_byte_order_mark_is_dropped() -> None:
    data = chunk("x")[6:-2]
    events = frame([BOM + BOM + b"data: " + data + b"\n\n"])
    assert events[0].data is None  # the second mark is part of the first field's name: not `data`


def test_empty_finish_reasons_finish_nothing() -> None:
    # Ollama: every chunk carries `"finish_reason": ""` (github.com/ollama/ollama/issues/4357)
    pieces = [b'data: {"id":"chatcmpl-693","object":"chat.completion.chunk","choices":[{"index":0,"delta":'
              b'{"role":"assistant","content":" Hello"},"finish_reason":""}]}\n\n'] * 3
    w, _ = watch(pieces)
    assert not w.complete and w.finished == set()


def test_a_finish_reason_that_means_error_after_commit_is_a_provider_error() -> None:
    # vLLM ends an aborted request with finish_reason "abort" and then [DONE] (github.com/vllm-project/vllm/issues/57082)
    w, _ = watch([chunk("partial"), chunk(finish="abort"), DONE])
    assert w.done and w.provider_error


def test_usage_in_a_vendor_field_or_a_choice_is_the_stream_usage_counted_once() -> None:
    # Groq: usage in `x_groq` of the finishing chunk (github.com/vercel/ai/issues/1651)
    groq = event({"id": "c", "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
        "x_groq": {"id": "req_01hy8ppkajfqk987jv2vx88m9r", "usage": {"queue_time": 0.075, "prompt_tokens": 23,
                   "prompt_time": 0.006, "completion_tokens": 19, "completion_time": 0.022, "total_tokens": 42}}})
    w, _ = watch([chunk("Hi"), groq, DONE])
    assert (w.usage or {})["prompt_tokens"] == 23
    # the same usage repeated later at the top level is one usage, not two
    repeated, _ = watch([chunk("Hi"), groq, usage_chunk(23, 19), DONE])
    assert repeated.usage == {"prompt_tokens": 23, "completion_tokens": 19, "total_tokens": 42}


def test_an_in_band_vendor_envelope_after_commit_is_a_provider_error() -> None:
    envelope = b'data: {"id":"x","choices":[],"base_resp":{"status_code":1002,"status_msg":"rate limit"}}\n\n'
    assert watch([chunk("a"), envelope])[0].provider_error
