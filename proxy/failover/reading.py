"""Reading an attempt's answer up to its verdict, before anything is sent to the client.

An error status is read with its body and classified (`proxy.failover.judge.refusals`); a stream is read up
to its first event that carries output (`proxy.failover.judge.verdict`, framed by `proxy.upstream.sse`);
a non-streaming body is parsed and judged whole; a binary answer is read to its first bytes. Each
raises the `UpstreamError` of the failure it finds; the caller (the attempt loop) owns the response.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from proxy.errors import EmptyAnswer, MalformedResponse, UpstreamError, UpstreamStatus
from proxy.failover.judge.refusals import classify_refusal
from proxy.failover.judge.request_terms import RequestTerms
from proxy.failover.judge.verdict import AnswerCheck, FirstEvent, OutputPredicate, answer_failure, first_event_verdict
from proxy.upstream.client import MAX_ERROR_BODY, UpstreamResponse
from proxy.upstream.sse import SseEvent, SseFramer, looks_like_sse, without_bom

# What a stream may send before its first output (comments, keep-alives, role-only chunks) is held,
# up to this many bytes; past it the stream is committed unjudged rather than failed over. Counted
# in stream bytes, never in reads, so the same bytes get the same verdict however they arrive.
MAX_HELD_BYTES = 256 * 1024


async def status_error(response: UpstreamResponse, terms: Callable[[], RequestTerms]) -> UpstreamStatus:
    """The attempt's failure for an error status, read with its body; `terms` gives the names the
    refused request used (asked for only here, on the error path)."""
    try:
        body = await response.read(MAX_ERROR_BODY)
    except UpstreamError:
        body = b""
    verdict = classify_refusal(response.status, body, response.headers, time.time(), terms())
    return UpstreamStatus(
        response.status,
        retryable=verdict.retryable,
        body=body,
        headers=response.headers,
        retry_after_s=verdict.retry_after_s,
        kind=verdict.kind,
        counts=verdict.counts,
        cooldown=verdict.cooldown.value,
        second_opinion=verdict.second_opinion,
    )


def is_json(response: UpstreamResponse) -> bool:
    return any(k.lower() == "content-type" and "json" in v.lower() for k, v in response.headers)


async def first_bytes(response: UpstreamResponse) -> bytes:
    """A binary answer (audio) up to its first bytes: a JSON body where bytes were promised is an
    error in disguise, and an answer that ends empty is no answer; both fail over."""
    if is_json(response):
        raise MalformedResponse("the provider answered JSON where audio bytes were expected")
    async for chunk in response.chunks():
        if chunk:
            return chunk
    raise MalformedResponse("the provider's answer is empty")


async def first_output(response: UpstreamResponse, output: OutputPredicate) -> bytes:
    """The stream up to and including its first event that carries output, judged before commit:
    comments, pings and chunks without output are held; an error event, `[DONE]` or the end of the
    body before any output fail the attempt. Returns every byte read, to relay in order, less a
    leading byte-order mark (which the official SDKs would read as part of the first field's name)."""
    framer = SseFramer()
    held: list[bytes] = []
    checked = False
    async for chunk in response.chunks():
        held.append(chunk)
        if not checked:
            checked = check_sse(b"".join(held), end=False)
        if commits(framer.feed(chunk), output) or framer.received > MAX_HELD_BYTES:
            return without_bom(b"".join(held))
    if held and (checked or check_sse(b"".join(held), end=True)) and commits(framer.close(), output):
        return without_bom(b"".join(held))
    raise EmptyAnswer("the provider's stream ended before any output")


def check_sse(raw: bytes, *, end: bool) -> bool:
    """True once the stream is known to be SSE; raises when it is not; False while too short to say."""
    head = without_bom(raw).lstrip()
    if len(head) < 6 and not end:
        return False
    if head and not looks_like_sse(head):
        raise MalformedResponse("the provider's stream is not server-sent events")
    return bool(head)


def commits(events: list[SseEvent], output: OutputPredicate) -> bool:
    """Does one of these events commit the stream? An event that ends past `MAX_HELD_BYTES` is too
    large to judge and commits as it is; the others are judged in order (a failure raises)."""
    for event in events:
        if event.end > MAX_HELD_BYTES or first_event_verdict(output, event) is FirstEvent.OUTPUT:
            return True
    return False


def judge_body(body: bytes, check: AnswerCheck | None) -> Any:
    """A non-streaming answer's parsed JSON, judged by its content: raises `MalformedResponse` when
    it is not JSON and the verdict's failure (`ErrorInAnswer`, `EmptyAnswer`) when it carries one."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedResponse("the provider's answer is not valid JSON") from None
    failure = answer_failure(check, parsed)
    if failure is not None:
        raise failure
    return parsed
