"""The verdict on an Anthropic-speaking offer's answer (`proxy.dialects.anthropic_verdict`): which
event of a recorded Messages stream commits it, which fail it over before that, and what the relay's
watch sees after commit."""

from __future__ import annotations

import pytest

from proxy.dialects.anthropic_verdict import MessagesStreamWatch, has_input_tokens, is_message
from proxy.errors import EmptyAnswer, ErrorInAnswer
from proxy.failover.endpoints import PROXIED
from proxy.failover.judge.verdict import FirstEvent, answer_failure, first_event_verdict
from proxy.failover.reading import commits
from proxy.upstream.sse import SseEvent, SseFramer
from tests.dialect_fixtures import ANTHROPIC_BASIC, ANTHROPIC_ERROR_EVENT, ANTHROPIC_THINKING, ANTHROPIC_TOOL, pieces

MESSAGES = PROXIED[("POST", "/v1/messages")]
COUNT = PROXIED[("POST", "/v1/messages/count_tokens")]


def events(stream: bytes) -> list[SseEvent]:
    framer = SseFramer()
    return framer.feed(stream) + framer.close()


def committing(stream: bytes) -> SseEvent:
    """The first event the verdict says carries output (every one before it held)."""
    for event in events(stream):
        if first_event_verdict(MESSAGES.events.output, event) is FirstEvent.OUTPUT:
            return event
    raise AssertionError("nothing committed")


@pytest.mark.parametrize(
    ("stream", "first"),
    [
        (ANTHROPIC_BASIC, b'"text":"Hello"'),  # message_start, the empty text block and the ping hold
        (ANTHROPIC_TOOL, b'"text":"Okay"'),
        (ANTHROPIC_THINKING, b'"thinking": "I need to find the GCD'),  # thinking is output
    ],
)
def test_a_recorded_stream_commits_on_its_first_output(stream: bytes, first: bytes) -> None:
    event = committing(stream)
    assert event.name == b"content_block_delta" and event.data is not None and first in event.data


def test_a_tool_call_with_no_text_commits_when_its_block_starts() -> None:
    recorded = ANTHROPIC_TOOL.split(b"\n\n")
    start, tool_start = recorded[0], next(e for e in recorded if b'"type":"tool_use"' in e)
    event = committing(start + b"\n\n" + tool_start + b"\n\n")
    assert event.name == b"content_block_start" and event.data is not None and b"get_weather" in event.data


def test_an_error_event_before_any_output_fails_the_attempt() -> None:
    head = ANTHROPIC_BASIC.split(b"event: content_block_delta")[0]  # message_start, block start, ping
    with pytest.raises(ErrorInAnswer, match="Overloaded"):
        commits(events(head + ANTHROPIC_ERROR_EVENT), MESSAGES.events.output)


def test_a_stream_that_stops_before_any_output_is_no_answer() -> None:
    opening = ANTHROPIC_BASIC.split(b"event: content_block_start")[0]
    with pytest.raises(EmptyAnswer):
        commits(events(opening + b'event: message_stop\ndata: {"type":"message_stop"}\n\n'), MESSAGES.events.output)


def test_a_message_start_without_content_and_pings_hold() -> None:
    opening = ANTHROPIC_BASIC.split(b"event: content_block_delta")[0]
    assert not commits(events(opening), MESSAGES.events.output)


@pytest.mark.parametrize("size", [1, 13, 4096])
def test_the_watch_follows_a_recorded_stream_to_its_end(size: int) -> None:
    watch = MessagesStreamWatch()
    for piece in pieces(ANTHROPIC_TOOL, size):
        watch.feed(piece)
    watch.close()
    assert watch.done and watch.complete and not watch.provider_error
    assert watch.usage is not None and watch.usage["prompt_tokens"] == 472 and watch.usage["completion_tokens"] == 89


def test_a_stream_cut_before_its_stop_reason_is_not_complete() -> None:
    watch = MessagesStreamWatch()
    watch.feed(ANTHROPIC_TOOL.split(b"event: message_delta")[0])
    watch.close()
    assert not watch.done and not watch.complete


def test_the_last_event_without_its_blank_line_still_ends_the_stream() -> None:
    watch = MessagesStreamWatch()
    watch.feed(ANTHROPIC_BASIC)  # the recorded fixture ends right after message_stop's data
    assert not watch.done and watch.unterminated
    watch.close()
    assert watch.done and watch.unterminated


def test_an_error_event_after_commit_is_the_providers_error() -> None:
    watch = MessagesStreamWatch()
    watch.feed(ANTHROPIC_BASIC.split(b"event: content_block_stop")[0])
    watch.feed(ANTHROPIC_ERROR_EVENT)
    assert watch.provider_error and not watch.done


def test_pings_are_keep_alives_not_progress() -> None:
    watch = MessagesStreamWatch()
    assert watch.feed(b'event: ping\ndata: {"type": "ping"}\n\n') is False
    delta = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}\n\n'
    assert watch.feed(delta) is True


def test_a_200_body_is_judged_by_anthropics_shapes() -> None:
    # https://docs.claude.com/en/api/messages (the reference's example answer) and count_tokens' {"input_tokens"}
    answer = {"content": [{"text": "Hi! My name is Claude.", "type": "text"}], "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
              "role": "assistant", "type": "message", "stop_reason": "end_turn"}  # fmt: skip
    assert is_message(answer) and answer_failure(MESSAGES.check, answer) is None
    assert isinstance(answer_failure(MESSAGES.check, {"type": "message"}), EmptyAnswer)
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert isinstance(answer_failure(MESSAGES.check, overloaded), ErrorInAnswer)
    assert has_input_tokens({"input_tokens": 2095}) and not has_input_tokens({"input_tokens": "2095"})
    assert answer_failure(COUNT.check, {"input_tokens": 14}) is None
