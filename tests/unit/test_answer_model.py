"""The answer's `model` is the canonical model, whatever offer served (`[proxy] answer_model`).

Unit tests of the pure rewrite (`proxy.upstream.answer_model`) over the bytes providers send, then the
real proxy (`failover serve`) and the official openai SDK, plain and streamed."""

from __future__ import annotations

import orjson
import pytest

from proxy.upstream.answer_model import StreamRewrite, rewrite_json

# A chat chunk in OpenRouter's shape, with its `openrouter_metadata` naming endpoints by their own
# `model` (fields as documented at https://openrouter.ai/docs/agent-sdk/typescript/models/chatstreamchunk).
OPENROUTER_CHUNK = (
    b'data: {"id":"gen-1","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk",'
    b'"created":1677652288,"choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}],'
    b'"openrouter_metadata":{"endpoints":{"available":[{"model":"openai/gpt-4o","provider":"OpenAI"}]}}}\n\n'
)
# A Responses API `response.created` event (shape as documented at
# https://openrouter.ai/docs/agent-sdk/typescript/models/openresponsesstreameventresponsecreated).
RESPONSE_CREATED = (
    b'event: response.created\ndata: {"type":"response.created","response":{"id":"resp-abc123",'
    b'"object":"response","created_at":1704067200,"model":"gpt-4o-2024-08-06","status":"in_progress",'
    b'"output":[],"tools":[]},"sequence_number":0}\n\n'
)
DELTA = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi","sequence_number":3}\n\n'


def chunk(model: str, text: str, spacing: str = "") -> bytes:
    sep = ":" + spacing
    return (
        f'data: {{"id"{sep}"chatcmpl-1","object"{sep}"chat.completion.chunk","model"{sep}"{model}",'
        f'"choices"{sep}[{{"index"{sep}0,"delta"{sep}{{"content"{sep}"{text}"}}}}]}}\n\n'
    ).encode()


def test_a_json_answer_names_the_canonical_model_and_keeps_every_other_byte() -> None:
    body = b'{"id": "chatcmpl-1", "model": "openai/gpt-4",  "choices": [{"message": {"content": "a \\"model\\": \\"x\\""}}]}'
    assert rewrite_json(body, "gpt-4") == body.replace(b'"openai/gpt-4"', b'"gpt-4"')
    nested_first = b'{"meta": {"model": "openai/gpt-4"}, "model": "openai/gpt-4"}'
    assert rewrite_json(nested_first, "gpt-4") == b'{"meta": {"model": "openai/gpt-4"}, "model": "gpt-4"}'
    assert rewrite_json(b'{"model": "gpt-4"}', "gpt-4") == b'{"model": "gpt-4"}'  # already so: the same bytes
    for untouched in (b"<html>502</html>", b'{"data": []}', b"[1, 2]", b'{"model": 4}'):
        assert rewrite_json(untouched, "gpt-4") == untouched
    assert rewrite_json(b'{"model":"a/\\u00e9"}', "gpt-4", named="a/\u00e9") == b'{"model":"a/\\u00e9"}'  # not found: kept


def test_every_event_of_a_stream_names_the_canonical_model() -> None:
    rewrite = StreamRewrite("gpt-4o")
    sent = rewrite.feed(OPENROUTER_CHUNK) + rewrite.feed(OPENROUTER_CHUNK) + rewrite.finish(b"data: [DONE]\n\n")
    events = [orjson.loads(line[6:]) for line in sent.split(b"\n\n") if line.startswith(b"data: {")]
    assert [e["model"] for e in events] == ["gpt-4o", "gpt-4o"]
    assert [e["openrouter_metadata"]["endpoints"]["available"][0]["model"] for e in events] == ["openai/gpt-4o"] * 2
    assert sent.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("spacing", ["", " "])  # as the provider writes its JSON, the same in every event
def test_events_cut_anywhere_are_rewritten_the_same(spacing: str) -> None:
    stream = chunk("a/gpt-4", "one", spacing) + chunk("a/gpt-4", "two", spacing) + b": keep-alive\r\n\r\n"
    stream += chunk("a/gpt-4", "3", spacing)
    whole = StreamRewrite("gpt-4")
    expected = whole.feed(stream) + whole.finish()
    assert expected == stream.replace(b'"a/gpt-4"', b'"gpt-4"')
    for size in (1, 2, 7, 13, 64):
        rewrite = StreamRewrite("gpt-4")
        pieces = [rewrite.feed(stream[i : i + size]) for i in range(0, len(stream), size)]
        assert b"".join(pieces) + rewrite.finish() == expected, size
        assert all(p[-1:] in (b"\n", b"\r", b"") for p in pieces)  # only whole lines go out


def test_a_responses_stream_names_the_canonical_model_in_its_response_object() -> None:
    rewrite = StreamRewrite("gpt-4o")
    sent = rewrite.feed(RESPONSE_CREATED + DELTA) + rewrite.finish()
    assert b'"model":"gpt-4o"' in sent and b"2024-08-06" not in sent
    assert sent.endswith(DELTA)


def test_a_stream_that_already_names_the_canonical_model_is_passed_as_it_is() -> None:
    rewrite = StreamRewrite("gpt-4")
    data = chunk("gpt-4", "x") + chunk("gpt-4", "y")
    assert rewrite.feed(data) == data and rewrite.finish() == b""


def test_a_stream_that_names_the_canonical_model_needs_no_rewrite_at_all() -> None:
    assert StreamRewrite.needed(chunk("gpt-4", "a") + chunk("gpt-4", "b"), "gpt-4") is None
    assert StreamRewrite.needed(chunk("a/gpt-4", "a"), "gpt-4") is not None
    assert StreamRewrite.needed(b": OPENROUTER PROCESSING\n\n", "gpt-4") is not None  # nothing named yet


def test_several_events_in_one_chunk_keep_their_nested_models() -> None:
    rewrite = StreamRewrite("gpt-4o")
    first = rewrite.feed(OPENROUTER_CHUNK)
    both = rewrite.feed(OPENROUTER_CHUNK + OPENROUTER_CHUNK)  # once learnt, a chunk of two events
    assert both == first + first
    plain = StreamRewrite("gpt-4")
    assert plain.feed(chunk("a/gpt-4", "1")) == chunk("gpt-4", "1")
    assert plain.feed(chunk("a/gpt-4", "2") + chunk("a/gpt-4", "3")) == chunk("gpt-4", "2") + chunk("gpt-4", "3")
