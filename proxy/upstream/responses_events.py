"""The OpenAI API's typed server-sent events: which carry output, which fail, and what they used.

A `/v1/responses` stream is `event: <type>` + `data: {"type": <type>, ...}` pairs (OpenAI's
"Streaming events" reference): `response.created` and `response.in_progress` first, then output
items (`response.output_item.added`, `response.content_part.added`, `response.output_text.delta`,
...), and one terminal event: `response.completed`, `response.incomplete` or `response.failed`
(an `error` event may come instead). A streamed transcription sends `transcript.text.delta` events,
then `transcript.text.done` with the usage (some compatible servers add a `[DONE]`).

The same rule as for chat streams applies: the proxy commits on the first event that carries output,
so anything before it (a `response.failed` or `error` included) fails over. Framing is
`proxy.upstream.sse`'s; this module only reads the events' types.

- `responses_output` / `transcript_output`: the "is this event output?" predicates that
  the endpoint table (`proxy.failover.endpoints`) gives these endpoints (a failure event raises).
- `response_id_of(first)`: the response's id, from the `response.created` among the held bytes.
- `TypedStreamWatch`: the relay's watch (`proxy.upstream.sse.RelayWatch`) for these streams: done at
  the terminal event, a failure when it is `response.failed`/`error`, usage from the terminal event.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

import orjson

from proxy.errors import ErrorInAnswer
from proxy.upstream.sse import SseEvent, SseFramer, is_done

MAX_TERMINAL_EVENT = 4 * 1024 * 1024  # the final event repeats the whole response; larger ones are skipped
SKIPPED_HEAD = 256  # bytes of a skipped event kept to read its type
TERMINAL_OK = frozenset({"response.completed", "response.incomplete"})
FAILED = frozenset({"response.failed", "error"})
# events that carry output although their type does not end in `.delta`
OUTPUT = frozenset({"response.output_item.done", "response.content_part.done", "response.output_text.done"})
TRANSCRIPT_DONE = frozenset({"transcript.text.done"})


class Verdict(Enum):
    PENDING = "pending"  # bookkeeping: created, in progress, an empty item or part added
    OUTPUT = "output"  # something the client will show: commit
    FAILED = "failed"  # the response failed in-band


def _kind(name: bytes | str | None, data: Any) -> str | None:
    """An event's type: the data's `type`, else its `event:` field."""
    kind = data.get("type") if isinstance(data, Mapping) else None
    if isinstance(kind, str):
        return kind
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name


def event_verdict(name: bytes | str | None, data: Any) -> Verdict:
    """Judge one Responses event by its type (the data's `type`, else the `event:` field) and payload."""
    kind = _kind(name, data)
    if kind in FAILED or (isinstance(data, Mapping) and data.get("error") and kind not in TERMINAL_OK):
        return Verdict.FAILED
    if kind in TERMINAL_OK or kind in OUTPUT:
        return Verdict.OUTPUT
    if isinstance(kind, str) and kind.endswith(".delta") and isinstance(data, Mapping) and data.get("delta"):
        return Verdict.OUTPUT
    return Verdict.PENDING


def responses_output(event_name: bytes | None, payload: Mapping[str, Any]) -> bool:
    """Does this `/responses` event carry output? Raises `ErrorInAnswer` for a failure event."""
    verdict = event_verdict(event_name, payload)
    if verdict is Verdict.FAILED:
        raise ErrorInAnswer(f"the provider's response failed before any output: {_reason(payload)}")
    return verdict is Verdict.OUTPUT


def transcript_output(event_name: bytes | None, payload: Mapping[str, Any]) -> bool:
    """Does this streamed-transcription event carry output (a non-empty delta, or the final text)?
    Raises `ErrorInAnswer` for an `error` event."""
    kind = _kind(event_name, payload)
    if kind in FAILED:
        raise ErrorInAnswer(f"the provider's transcription failed before any output: {_reason(payload)}")
    return kind in TRANSCRIPT_DONE or (kind == "transcript.text.delta" and bool(payload.get("delta")))


def _reason(data: Mapping[str, Any]) -> str:
    error = data.get("error")
    response = data.get("response")
    if error is None and isinstance(response, dict):
        error = response.get("error")
    code = error.get("code") if isinstance(error, dict) else data.get("code")
    return str(code or data.get("type") or "error")[:64]


def _payload(event: SseEvent) -> dict[str, Any] | None:
    if event.data is None or is_done(event.data):
        return None
    try:
        data = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def response_id_of(first: bytes) -> str | None:
    """The id of the response a Responses stream created (`response.created`'s `response.id`), read
    from the bytes held before commit; None when they carry none."""
    framer = SseFramer()
    for event in [*framer.feed(first), *framer.close()]:
        data = _payload(event)
        response = data.get("response") if data is not None else None
        ident = response.get("id") if isinstance(response, dict) else None
        if isinstance(ident, str):
            return ident
    return None


class TypedStreamWatch:
    """The relay's watch for a typed stream (`proxy.upstream.sse.RelayWatch`).

    `done` once a terminal event has passed: for a Responses stream `response.completed`,
    `response.incomplete`, or an in-band `response.failed`/`error` (then `provider_error` too); for a
    transcription (`transcript=True`) `transcript.text.done`, `[DONE]` or an `error`. Only events
    whose bytes name one of those types are parsed. `usage` is the terminal event's usage object
    (`response.usage` of a Responses event, `usage` of a transcript's). An event longer than
    `MAX_TERMINAL_EVENT` is relayed but not buffered: its type is read from its first bytes (its
    end is found in the next chunk holding a blank line; one split across two reads is missed, and
    the event after it is then skipped as well)."""

    __slots__ = (
        "_framer", "_head", "_open_at_end", "_skipping", "_transcript", "_usage", "done", "finish_reason",
        "provider_error",
    )  # fmt: skip

    def __init__(self, *, transcript: bool = False) -> None:
        self._framer = SseFramer()
        self._transcript = transcript
        self._usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None  # the terminal response's `status` (`completed`, `incomplete`)
        self._skipping = False
        self._head = b""
        self._open_at_end = False  # the body ended inside an event (no final blank line)
        self.done = False
        self.provider_error = False

    @property
    def complete(self) -> bool:
        return False  # a typed stream ends with its terminal event, never with one we add

    @property
    def unterminated(self) -> bool:
        return self._open_at_end or self._skipping or self._framer.buffered > 0

    @property
    def usage(self) -> dict[str, Any] | None:
        return self._usage

    def feed(self, chunk: bytes) -> bool:
        """Take one relayed chunk; True when it carried data-event bytes (progress for the idle timer)."""
        if self._skipping:
            chunk = self._skip(chunk)
        events = self._framer.feed(chunk) if chunk else []
        for event in events:
            self._judge(event)
        if self._framer.buffered > MAX_TERMINAL_EVENT:
            self._start_skipping()
        return any(event.data is not None for event in events) or b"data" in chunk

    def close(self) -> None:
        """The body ended: an unterminated last event is judged as if its blank line had come."""
        self._open_at_end = self.unterminated
        for event in self._framer.close():
            self._judge(event)

    def _start_skipping(self) -> None:
        self._head = self._framer.head(SKIPPED_HEAD)
        self._framer, self._skipping = SseFramer(), True

    def _skip(self, chunk: bytes) -> bytes:
        """Drop the skipped event's bytes up to its blank line; judge it by its head; the rest is new."""
        ends = [i for i in (chunk.find(b"\n\n"), chunk.find(b"\r\n\r\n")) if i >= 0]
        if not ends:
            return b""
        self._skipping = False
        self._judge_kind(self._head)
        at = min(ends)
        return chunk[at + (4 if chunk[at : at + 4] == b"\r\n\r\n" else 2) :]

    def _judge(self, event: SseEvent) -> None:
        if self.done or event.data is None:
            return
        if is_done(event.data):
            self.done = self._transcript
            return
        if b"response." not in event.data and b"error" not in event.data and b"transcript.text.done" not in event.data:
            return  # a delta: nothing to decide
        data = _payload(event)
        if data is None:
            return
        kind = _kind(event.name, data)
        if kind in FAILED:
            self.done = self.provider_error = True
        elif kind in (TRANSCRIPT_DONE if self._transcript else TERMINAL_OK):
            self.done = True
            found = data if self._transcript else data.get("response") or {}
            usage, status = found.get("usage"), found.get("status")
            self._usage = usage if isinstance(usage, dict) else None
            self.finish_reason = status if isinstance(status, str) and not self._transcript else None

    def _judge_kind(self, head: bytes) -> None:
        """A skipped (too large) event, judged by the type named in its first bytes; no usage."""
        terminal = TRANSCRIPT_DONE if self._transcript else TERMINAL_OK
        if any(kind.encode() in head for kind in terminal):
            self.done = True
        elif any(f'"{kind}"'.encode() in head for kind in FAILED):
            self.done = self.provider_error = True
