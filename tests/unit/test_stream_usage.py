"""The proxy's ask for a stream's usage: the stage that keeps it from the client (over any cut of
the bytes), the refusals of it, the estimate when no usage comes, and OpenRouter's usage accounting."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from proxy.billing.cost import cost_text, cost_usd
from proxy.billing.usage_accounting import answer_with_cost, priced_usage
from proxy.failover.usage_ask import refuses_usage_ask
from proxy.types import Prices
from proxy.upstream.usage import Usage, counts_of, estimated_usage
from proxy.upstream.usage_stream import UsageStage, text_bytes, without_member


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice], **extra}


def sse(payloads: list[Any], *, asked: bool, sep: bytes = b"\n\n") -> bytes:
    """The stream as the provider sends it: with `"usage":null` in every chunk and a usage-only
    chunk when `asked` (OpenAI's shape), without either when not."""
    out = []
    for payload in payloads:
        sent = {**payload, "usage": None} if asked else payload
        out.append(b"data: " + orjson.dumps(sent) + sep)
    if asked:
        usage = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
        out.append(b"data: " + orjson.dumps({**chunk({}), "choices": [], "usage": usage}) + sep)
    out.append(b"data: [DONE]" + sep)
    return b"".join(out)


PAYLOADS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": 'Hello "usage": {"x": 1}, \\ world'}),  # text that looks like usage, with escapes
    chunk({"content": "!"}),
    chunk({}, "stop"),
]


def relayed(stage: UsageStage, raw: bytes, cuts: list[int]) -> bytes:
    out = []
    start = 0
    for cut in [*cuts, len(raw)]:
        out.append(stage.feed(raw[start:cut]))
        start = cut
    return b"".join(out) + stage.finish()


@pytest.mark.parametrize("sep", [b"\n\n", b"\r\n\r\n"])
def test_the_client_reads_what_it_would_have_read_however_the_bytes_are_cut(sep: bytes) -> None:
    asked, plain = sse(PAYLOADS, asked=True, sep=sep), sse(PAYLOADS, asked=False, sep=sep)
    assert asked != plain
    for size in (1, 2, 3, 7, 64, len(asked)):
        cuts = list(range(size, len(asked), size))
        assert relayed(UsageStage(strip=True), asked, cuts) == plain, size
    for cut in range(len(asked)):  # one cut anywhere
        assert relayed(UsageStage(strip=True), asked, [cut]) == plain


def test_usage_on_the_finishing_choice_chunk_is_cut_out_and_the_rest_is_left_byte_for_byte() -> None:
    finishing = b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2}, "x": "y"}\n\n'
    expected = b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}], "x": "y"}\n\n'
    assert relayed(UsageStage(strip=True), finishing, [40]) == expected
    first = b'data: {"usage": null, "id": "c", "choices": [{"delta": {"content": "usage"}}]}\n\n'
    assert UsageStage(strip=True).feed(first) == b'data: {"id": "c", "choices": [{"delta": {"content": "usage"}}]}\n\n'


def test_a_usage_the_provider_sends_unasked_stays() -> None:
    groq = b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"x_groq":{"usage":{"prompt_tokens":1}}}\n\n'
    assert UsageStage(strip=True).feed(groq) == groq
    assert without_member(groq, b'"usage"') == groq  # not a member of the outer object


def test_a_stream_the_client_asked_usage_for_is_left_as_it_came() -> None:
    asked = sse(PAYLOADS, asked=True)
    assert relayed(UsageStage(strip=False), asked, [5, 100]) == asked


def test_the_relayed_text_is_counted_as_sent() -> None:
    stage = UsageStage(strip=True)
    relayed(stage, sse(PAYLOADS, asked=True), [3, 50, 51])
    text = 'Hello "usage": {"x": 1}, \\ world' + "!"
    assert stage.text_bytes == len(orjson.dumps(text)) - 2  # escapes included, quotes not
    assert text_bytes(b'{"text": "abc", "arguments":"{\\"a\\":1}", "content":null}') == 3 + 9


def test_the_estimate_divides_text_by_four_and_says_so() -> None:
    assert estimated_usage(0, 0) == Usage(0, 0, estimated=True)
    assert estimated_usage(9, 8) == Usage(3, 2, estimated=True)


# Refusals of `stream_options`, each as its source quotes it.
REFUSALS = [
    (400, {"error": {"message": "Unrecognized request argument supplied: stream_options. Please contact us through "
                                "an Azure support request at: https://go.microsoft.com/fwlink/?linkid=2213926 for "
                                "further questions.", "type": "invalid_request_error", "param": "", "code": None}}),
    # https://github.com/CherryHQ/cherry-studio/issues/9214 (Azure AI Foundry)
    (400, {"detail": "Extra parameters ['stream_options'] are not allowed when extra-parameters is not set or set to "
                     "be 'error'. Set extra-parameters to 'pass-through' to pass to the model."}),
    # https://github.com/openai/openai-python/issues/2296 (Azure OpenAI "on your data")
    (400, {"error": {"code": "400", "message": "Validation error at #/stream_options: Extra inputs are not permitted"}}),
    # a pydantic server's shape (https://github.com/crewAIInc/crewAI/issues/60), the field it names being ours
    (422, {"object": "error", "message": {"detail": [{"type": "extra_forbidden", "loc": ["body", "stream_options"],
                                                      "msg": "Extra inputs are not permitted", "input": {}}]},
           "type": "invalid_request_error", "param": None, "code": None}),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body"), REFUSALS)
def test_refusals_of_the_ask_are_recognised(status: int, body: Any) -> None:
    assert refuses_usage_ask(status, orjson.dumps(body))


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"error": {"message": "Unrecognized request argument supplied: functions"}}),
        (429, {"error": {"message": "Rate limit reached; stream_options requests are limited"}}),
        (400, {"error": {"message": "This model's maximum context length is 8192 tokens."}}),
    ],
)
def test_other_refusals_are_not_about_the_ask(status: int, body: Any) -> None:
    assert not refuses_usage_ask(status, orjson.dumps(body))


PRICES = Prices(Decimal("0.0000025"), None, Decimal("0.00001"), None)


def test_a_whole_answer_gets_its_exact_cost_and_token_details() -> None:
    answer = {"id": "x", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 11}}
    usage = counts_of(answer["usage"])
    cost = cost_usd(usage, PRICES)
    assert cost == Decimal("0.0001275")
    out = answer_with_cost(orjson.dumps(answer), usage, cost)
    assert b'"cost":0.0001275' in out
    parsed = orjson.loads(out)["usage"]
    assert parsed["total_tokens"] == 18 and parsed["prompt_tokens_details"] == {"cached_tokens": 0}
    assert parsed["cost_details"] == {"upstream_inference_cost": 0.0001275}


def test_a_stream_that_asked_for_accounting_keeps_its_usage_chunk_with_the_cost() -> None:
    stage = UsageStage(strip=True, account=lambda found: priced_usage(found, PRICES))
    out = relayed(stage, sse(PAYLOADS, asked=True), [17])
    assert b'"usage":null' not in out
    usage_event = next(e for e in out.split(b"\n\n") if b'"cost"' in e)
    expected = cost_text(cost_usd(Usage(9, 3), PRICES) or Decimal(0))
    assert b'"cost":' + expected.encode() in usage_event
    assert orjson.loads(usage_event[6:])["choices"] == []


def test_a_stream_that_took_the_ask_counts_its_main_text_only() -> None:
    stage = UsageStage(strip=True, all_text=False)
    reasoning = b'data: {"choices":[{"delta":{"reasoning_content":"hmm"}}]}\n\n'
    relayed(stage, reasoning + sse(PAYLOADS, asked=True), [9])
    assert stage.text_bytes == len(orjson.dumps('Hello "usage": {"x": 1}, \\ world!')) - 2  # not the reasoning
    completion = UsageStage(strip=True, all_text=False, value=b'"text":"')
    completion.feed(b'data: {"choices":[{"text":"abcd","index":0}]}\n\n')
    assert completion.text_bytes == 4
