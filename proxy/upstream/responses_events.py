"""The Responses API's typed server-sent events: which carry output, which fail, and what they used.

A `/v1/responses` stream is `event: <type>` + `data: {"type": <type>, ...}` pairs (OpenAI's
"Streaming events" reference): `response.created` and `response.in_progress` first, then output
items (`response.output_item.added`, `response.content_part.added`, `response.output_text.delta`,
...), and one terminal event: `response.completed`, `response.incomplete` or `response.failed`
(an `error` event may come instead). The same rule as for chat streams applies: the proxy commits
on the first event that carries output, so anything before it (a `response.failed` or `error`
included) fails over.

`event_verdict` is the pure predicate; `first_output` reads an upstream stream up to that event;
`ResponsesTail` follows the rest of a committed stream for its terminal event and its usage.
`TranscriptTail` does the same for a streamed transcription (`transcript.text.delta` events, then
`transcript.text.done` with the usage), the other typed stream of the OpenAI API.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import orjson

from proxy.errors import MalformedResponse
from proxy.upstream.client import UpstreamResponse
from proxy.upstream.usage import Usage, usage_of

MAX_BEFORE_OUTPUT = 256 * 1024  # events before the first output longer than this: not a Responses stream
MAX_TERMINAL_EVENT = 4 * 1024 * 1024  # the final event repeats the whole response; larger ones are skipped
TERMINAL_OK = frozenset({"response.completed", "response.incomplete"})
FAILED = frozenset({"response.failed", "error"})
# events that carry output although their type does not end in `.delta`
OUTPUT = frozenset({"response.output_item.done", "response.content_part.done", "response.output_text.done"})


class Verdict(Enum):
    PENDING = "pending"  # bookkeeping: created, in progress, an empty item or part added
    OUTPUT = "output"  # something the client will show: commit
    FAILED = "failed"  # the response failed in-band


def event_verdict(name: str | None, data: Any) -> Verdict:
    """Judge one event by its type (the `event:` field, else the data's `type`) and its payload."""
    kind = data.get("type") if isinstance(data, dict) else None
    kind = kind if isinstance(kind, str) else name
    if kind in FAILED or (isinstance(data, dict) and data.get("error") and kind not in TERMINAL_OK):
        return Verdict.FAILED
    if kind in TERMINAL_OK or kind in OUTPUT:
        return Verdict.OUTPUT
    if isinstance(kind, str) and kind.endswith(".delta") and isinstance(data, dict) and data.get("delta"):
        return Verdict.OUTPUT
    return Verdict.PENDING


def split_event(buffer: bytes) -> tuple[bytes, bytes] | None:
    """The first complete event of `buffer` and the rest, or None while it is incomplete."""
    ends = [(i, n) for i, n in ((buffer.find(b"\n\n"), 2), (buffer.find(b"\r\n\r\n"), 4)) if i >= 0]
    if not ends:
        return None
    at, width = min(ends)
    return buffer[:at], buffer[at + width :]


def parse_event(raw: bytes) -> tuple[str | None, Any]:
    """(`event:` name, parsed `data:`) of one event; data is None for a comment or an empty event."""
    name: str | None = None
    data: list[bytes] = []
    for line in raw.splitlines():
        if line.startswith(b"event:"):
            name = line[6:].strip().decode("utf-8", "replace")
        elif line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
    if not data:
        return name, None
    try:
        return name, orjson.loads(b"\n".join(data))
    except orjson.JSONDecodeError:
        raise MalformedResponse("the provider's Responses stream has an event that is not JSON") from None


async def first_output(response: UpstreamResponse) -> tuple[bytes, str | None]:
    """Every byte up to and including the first event that carries output, and the response's id
    (from `response.created`). Raises `MalformedResponse` (fail over) for a failure event, garbage,
    or a stream that ends or grows too long before any output."""
    buffered, pending, response_id = b"", b"", None
    async for chunk in response.chunks():
        buffered += chunk
        pending += chunk
        while (found := split_event(pending)) is not None:
            raw, pending = found
            name, data = parse_event(raw)
            if data is None:
                continue
            if not isinstance(data, dict):
                raise MalformedResponse("the provider's Responses stream has an event that is not an object")
            response_id = response_id or _response_id(data)
            verdict = event_verdict(name, data)
            if verdict is Verdict.FAILED:
                raise MalformedResponse(f"the provider's response failed before any output: {_reason(data)}")
            if verdict is Verdict.OUTPUT:
                return buffered, response_id
        if len(buffered) > MAX_BEFORE_OUTPUT:
            raise MalformedResponse("the provider's Responses stream sent no output in its first 256 KiB")
    raise MalformedResponse("the provider's Responses stream ended before any output")


def _response_id(data: dict[str, Any]) -> str | None:
    response = data.get("response")
    ident = response.get("id") if isinstance(response, dict) else None
    return ident if isinstance(ident, str) else None


def _reason(data: dict[str, Any]) -> str:
    error = data.get("error")
    response = data.get("response")
    if error is None and isinstance(response, dict):
        error = response.get("error")
    code = error.get("code") if isinstance(error, dict) else data.get("code")
    return str(code or data.get("type") or "error")[:64]


class ResponsesTail:
    """Follows a committed Responses stream: its terminal event, and the usage that event carries.

    `done` is true once a terminal event (`response.completed`, `response.incomplete`, or an in-band
    `response.failed`/`error`) has passed: the stream ended as the API ends one. `failed` says it was
    a failure, relayed as it came and counted by the caller."""

    __slots__ = ("_pending", "_usage", "done", "failed")
    TERMINAL: frozenset[str] = TERMINAL_OK
    MARKERS: tuple[bytes, ...] = (b"response.", b"error")  # an event without one is not parsed

    def __init__(self) -> None:
        self._pending = b""
        self._usage: Usage | None = None
        self.done = False
        self.failed = False

    def feed(self, chunk: bytes) -> None:
        pending = self._pending + chunk
        while (found := split_event(pending)) is not None:
            raw, pending = found
            if any(marker in raw for marker in self.MARKERS):
                self._judge(raw)
        # an event is kept only until it ends; one larger than the limit is skipped, not buffered
        self._pending = pending if len(pending) <= MAX_TERMINAL_EVENT else b""

    def _judge(self, raw: bytes) -> None:
        try:
            name, data = parse_event(raw)
        except MalformedResponse:
            return
        kind = data.get("type") if isinstance(data, dict) else name
        if kind in self.TERMINAL:
            self.done = True
            assert isinstance(data, dict)
            self._usage = self._usage_from(data)
        elif kind in FAILED:
            self.done = self.failed = True

    def _usage_from(self, terminal: dict[str, Any]) -> Usage | None:
        return usage_of(terminal.get("response"))

    def usage(self) -> Usage | None:
        return self._usage


class TranscriptTail(ResponsesTail):
    """A streamed transcription: `transcript.text.done` ends it and carries the `usage` (a `[DONE]`,
    which some compatible servers add, is tolerated and ends it as well)."""

    __slots__ = ()
    TERMINAL = frozenset({"transcript.text.done"})
    MARKERS = (b"transcript.text.done", b"error", b"[DONE]")

    def _judge(self, raw: bytes) -> None:
        if raw.rstrip().endswith(b"data: [DONE]") or raw.rstrip().endswith(b"data:[DONE]"):
            self.done = True
            return
        super()._judge(raw)

    def _usage_from(self, terminal: dict[str, Any]) -> Usage | None:
        return usage_of(terminal)
