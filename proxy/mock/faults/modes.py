"""How each fault misbehaves on the wire.

    down             close the connection without answering
    status           answer `status` with an OpenAI-shaped error (429/503 also carry the retry headers)
    rate_limit       429 with `Retry-After` (default 1 s) and/or `retry-after-ms`
    slow_first_byte  sleep `first_byte_ms` before the status line, then answer normally
    stall            stream: send `after_chunks` SSE events, then nothing, forever; otherwise never answer
    cut              stream: send `after_chunks` SSE events, then close (no [DONE]); otherwise half a body
    garbage          200 with a body that is not JSON, or a stream of malformed SSE
    error_event      stream: send `after_chunks` SSE events, then an error event, then end; otherwise a 200
                     whose body is an error object

On Anthropic's routes (`/v1/messages`) errors are in Anthropic's envelope, and the error event is
the `overloaded_error` event Anthropic's streaming guide records.
"""

from __future__ import annotations

import asyncio
import email.utils
import time

from proxy.mock.answers import messages_api, payloads
from proxy.mock.answers.routes import Answer
from proxy.mock.settings import Faults
from proxy.mock.wire import EVENT_STREAM, JSON, Exchange, forever

GARBAGE_JSON = b"<html><body><h1>502 Bad Gateway</h1> (mock garbage)</body></html>"
GARBAGE_SSE = b'data: {"id": "chatcmpl-garbage", "choices": [{"delta": {"conte\n\nthis is not an event\n\n'
# OpenRouter's error inside a 200, as the verdict module quotes it (proxy.failover.judge.verdict)
CHAT_ERROR = b'{"error": {"message": "Provider returned error", "code": 502}}'


def retry_headers(faults: Faults, default: str | None, now: float | None = None) -> list[tuple[bytes, bytes]]:
    """`Retry-After` from `faults.retry_after` ("2", an HTTP date, "date+N", "Nms") and `retry-after-ms`."""
    value = faults.retry_after if faults.retry_after is not None else default
    headers: list[tuple[bytes, bytes]] = []
    if value and value.endswith("ms") and _is_number(value[:-2]):
        headers.append((b"retry-after-ms", value[:-2].encode()))
    elif value and value.startswith("date+") and _is_number(value[5:]):
        when = (time.time() if now is None else now) + float(value[5:])
        headers.append((b"retry-after", email.utils.formatdate(when, usegmt=True).encode()))
    elif value:
        headers.append((b"retry-after", value.encode("latin-1")))
    if faults.retry_after_ms is not None:
        headers.append((b"retry-after-ms", f"{faults.retry_after_ms:g}".encode()))
    return headers


async def inject(exchange: Exchange, fault: str, faults: Faults, streaming: bool, name: str) -> bool:
    """Play the part of `fault` that comes before the answer; True when that was the whole answer."""
    if fault == "down":
        await exchange.drop_connection()
    if fault == "slow_first_byte":
        await asyncio.sleep(faults.first_byte_ms / 1000)
    elif fault in ("status", "rate_limit"):
        await _error_answer(exchange, fault, faults, name)
        return True
    elif fault == "garbage":
        content_type, body = (EVENT_STREAM, GARBAGE_SSE) if streaming else (JSON, GARBAGE_JSON)
        await exchange.respond(200, body, content_type)
        return True
    return False


async def send_answer(exchange: Exchange, answer: Answer, fault: str, faults: Faults) -> None:
    """Write `answer`, stalling, cutting or failing it when `fault` says so."""
    if fault == "error_event" and answer.status == 200:
        await _error_event(exchange, answer, faults)
        return
    if answer.events is not None:
        await _send_stream(exchange, answer.events, fault, faults)
        return
    if fault == "stall":
        await forever()
    if fault == "cut":
        length = [(b"content-length", str(len(answer.body)).encode())]
        await exchange.start(answer.status, JSON, length)
        await exchange.write(answer.body[: len(answer.body) // 2])
        await exchange.drop_connection()
    await exchange.respond(answer.status, answer.body, answer.content_type)


async def _send_stream(exchange: Exchange, events: tuple[bytes, ...], fault: str, faults: Faults) -> None:
    interval = faults.chunk_interval_ms / 1000
    stop_after = faults.after_chunks if fault in ("stall", "cut") else len(events)
    await exchange.start(200, EVENT_STREAM, [(b"cache-control", b"no-cache")])
    for index, event in enumerate(events[:stop_after]):
        if index and interval:
            await asyncio.sleep(interval)
        await exchange.write(event)
        exchange.events_sent += 1
    if fault == "stall":
        await forever()
    if fault == "cut":
        await exchange.drop_connection()
    await exchange.write(b"", more=False)


async def _error_answer(exchange: Exchange, fault: str, faults: Faults, name: str) -> None:
    status = 429 if fault == "rate_limit" else faults.status
    message = f"mock {name}: injected {fault} ({status})"
    default = "1" if fault == "rate_limit" else None
    extra = retry_headers(faults, default) if status in (429, 503) else []
    anthropic = exchange.path.startswith("/v1/messages")
    body = (messages_api if anthropic else payloads).error_body(status, message)
    await exchange.respond(status, body, extra=extra)


async def _error_event(exchange: Exchange, answer: Answer, faults: Faults) -> None:
    """A 200 that fails: a stream's first `after_chunks` events then an error event, or an error body."""
    anthropic = exchange.path.startswith("/v1/messages")
    if answer.events is None:
        body = messages_api.error_body(529, "Overloaded") if anthropic else CHAT_ERROR
        await exchange.respond(200, body)
        return
    failure = messages_api.error_event() if anthropic else b"data: " + CHAT_ERROR + b"\n\n"
    await _send_stream(exchange, (*answer.events[: faults.after_chunks], failure), "none", faults)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
