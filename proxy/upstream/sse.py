"""Server-sent events, the one place that understands them: framing, `[DONE]`, comments, usage.

A stream is bytes cut into events by a blank line; a line is `field: value` (`data`, `event`, `id`,
`retry`) or a comment that starts with `:` (OpenRouter's `: OPENROUTER PROCESSING` keep-alive). The
WHATWG rules are followed where they matter here: `\\r\\n`, `\\r` and `\\n` all end a line, one space
after the colon is dropped, several `data` lines join with `\\n`, an event without data dispatches
nothing. Everything here depends only on the bytes, never on how the network cut them: `SseFramer`
and `StreamWatch` carry the unfinished event over from one read to the next.

- `SseFramer` (before commit): every complete event, in order, with its end offset in the stream.
- `StreamWatch` (after commit): what the relay must know, looking at the bytes first and parsing
  JSON only where a byte pattern says an event may matter (an error, a `finish_reason`).
- `is_done(data)`: `[DONE]` only as an event's whole data, never as a substring of content.
- `StreamWatch.usage`: the usage object of the last event that carried one, wherever in the event
  (for tokens and cost; the judge says where, `proxy.failover.judge.verdict.stream_event_outcome`).
- One leading byte-order mark is ignored, as the event-stream rules allow (`SseFramer`,
  `without_bom`): openai-python would otherwise drop the first event.
- `RelayWatch`: what the relay asks of any watch (`StreamWatch` for chat-like streams; the typed
  streams of the Responses API and of transcriptions have theirs in `proxy.upstream.responses_events`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import orjson

DONE = b"[DONE]"
BOM = b"\xef\xbb\xbf"  # U+FEFF in UTF-8: a stream may begin with one (WHATWG event-stream interpretation)
FIELDS = (b"data:", b":", b"event:", b"id:", b"retry:", b"data\n", b"event\n")
MAX_WATCHED_EVENT = 1024 * 1024  # after commit, a longer event is relayed but not inspected
RECENT_BLOCKS = 16  # chunks kept (by reference) to read finish reasons and usage at a stream's end


class SseEvent(NamedTuple):
    """One complete event. `data` is None when it had no `data` line (a comment, a ping, an `id`).
    A named tuple: one is made per event before commit, and a tuple is the cheapest record."""

    data: bytes | None
    name: bytes | None
    end: int  # offset in the stream just past the event's blank line


def normalize(raw: bytes) -> bytes:
    """The same bytes with every line ending as `\\n` (only when a `\\r` is present: rare)."""
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n") if b"\r" in raw else raw


def without_bom(raw: bytes) -> bytes:
    """The stream's first bytes without the one leading byte-order mark a stream may start with."""
    return raw[3:] if raw.startswith(BOM) else raw


def looks_like_sse(head: bytes) -> bool:
    """Does a stream that starts with `head` (leading blank lines removed) speak SSE at all?"""
    return head.startswith(FIELDS)


def parse_event(block: bytes, end: int = 0) -> SseEvent:
    """One event from its lines (line endings already `\\n`, no trailing blank line)."""
    if block.startswith(b"data: ") and b"\n" not in block:  # the common one-line event, quickly
        return SseEvent(block[6:], None, end)
    data: list[bytes] = []
    name: bytes | None = None
    for line in block.split(b"\n"):
        if not line or line[0] == 0x3A:  # ":" starts a comment
            continue
        field, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value
    return SseEvent(b"\n".join(data) if data else None, name, end)


def is_done(data: bytes | None) -> bool:
    """The end-of-stream marker OpenAI-compatible servers send: an event whose whole data is `[DONE]`."""
    return data is not None and data.strip() == DONE


def _carry_cr(chunk: bytes, carried: bool) -> tuple[bytes, bool]:
    """`chunk` with line endings as `\\n`, and whether it ended in a `\\r` that may be half of a
    `\\r\\n` split across two reads (held back until the next chunk says)."""
    if carried:
        chunk = b"\r" + chunk
    if b"\r" not in chunk:
        return chunk, False
    held = chunk.endswith(b"\r")
    return normalize(chunk[:-1] if held else chunk), held


class SseFramer:
    """Incremental framing: `feed()` returns the events completed by a chunk, whatever its size.

    Offsets and `buffered` count the stream's bytes with line endings as `\\n`, so a bound on them
    depends only on the bytes, never on how the network cut them."""

    __slots__ = ("_cr", "_head", "_offset", "_pending")

    def __init__(self) -> None:
        self._pending = b""
        self._offset = 0  # bytes of complete events so far
        self._cr = False
        self._head: bytes | None = b""  # the stream's first bytes, until a leading BOM is ruled in or out

    @property
    def buffered(self) -> int:
        """Bytes received past the last complete event."""
        return len(self._pending) + self._cr

    @property
    def received(self) -> int:
        return self._offset + self.buffered

    def head(self, size: int) -> bytes:
        """The first `size` bytes of the event still waiting for its blank line."""
        return self._pending.lstrip(b"\n")[:size]

    def feed(self, chunk: bytes) -> list[SseEvent]:
        if self._head is not None:
            chunk = self._skip_bom(chunk)
        chunk, self._cr = _carry_cr(chunk, self._cr)
        data = self._pending + chunk if self._pending else chunk
        last = data.rfind(b"\n\n")
        if last < 0:
            self._pending = data
            return []
        complete, self._pending = data[: last + 2], data[last + 2 :]
        events = []
        end = self._offset
        for block in complete[:-2].split(b"\n\n"):
            end += len(block) + 2
            if block.strip(b"\n"):
                events.append(parse_event(block.strip(b"\n"), end))
        self._offset = end
        return events

    def _skip_bom(self, chunk: bytes) -> bytes:
        """Drop one leading BOM, even one cut across reads; after three bytes the question is settled."""
        data = self._head + chunk if self._head else chunk
        if len(data) < len(BOM) and BOM.startswith(data):
            self._head = data
            return b""
        self._head = None
        return without_bom(data)

    def close(self) -> list[SseEvent]:
        """At the end of the body: an unterminated last event counts (servers that omit the final blank line)."""
        rest = self._pending.strip(b"\n")
        end = self.received
        self._pending, self._cr = b"", False
        return [parse_event(rest, end)] if rest else []


def _may_matter(block: bytes) -> bool:
    """Byte patterns of the events worth parsing after commit: an error, a non-empty finish reason
    (a string: `"finish_reason":""` finishes nothing), a usage object (not the `null` some servers
    put in every chunk). A JSON string cannot hold an unescaped quote, so content text never matches.
    (`find`, not `in`: `bytes.__contains__` first tries its argument as an integer, and raises and
    clears a TypeError each time; these run on every chunk of every stream.)"""
    if block.find(b'"error') >= 0 or block.find(b'"base_resp"') >= 0:
        return True
    if _finish_in(block, b'"finish_reason":') or _finish_in(block, b'"finishReason":'):
        return True
    return _followed_by(block, b'"usage":', 0x7B) or _followed_by(block, b'"usageMetadata":', 0x7B)


def _finish_in(block: bytes, key: bytes) -> bool:
    """Does some `key` have a non-empty string value (a quote that is not at once closed)?"""
    at = block.find(key)
    while at >= 0:
        at += len(key)
        if at < len(block) and block[at] == 0x20:
            at += 1
        if block[at : at + 1] == b'"' and block[at + 1 : at + 2] not in (b'"', b""):
            return True
        at = block.find(key, at)
    return False


def _followed_by(block: bytes, key: bytes, first: int) -> bool:
    """Does some `key` in `block` have the byte `first` as its value's first byte (after one space)?"""
    at = block.find(key)
    while at >= 0:
        at += len(key)
        if at < len(block) and block[at] == 0x20:
            at += 1
        if at < len(block) and block[at] == first:
            return True
        at = block.find(key, at)
    return False


DONE_LINES = (b"data: [DONE]\n", b"data:[DONE]\n")
INNER_DONE_LINES = (b"\ndata: [DONE]\n", b"\ndata:[DONE]\n")


def _is_done_line(block: bytes) -> bool:
    """A line that is exactly `data: [DONE]` (or `data:[DONE]`), in normalized complete events:
    anchored at a line start, so content whose text contains `data: [DONE]` never matches."""
    return block.startswith(DONE_LINES) or INNER_DONE_LINES[0] in block or INNER_DONE_LINES[1] in block


def first_finish_reason(answer: Any) -> str | None:
    """The first choice's `finish_reason` of a chat or text completion answer or chunk, or None."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    reason = first.get("finish_reason") if isinstance(first, dict) else None
    return reason if isinstance(reason, str) and reason else None


class RelayWatch(Protocol):
    """Fed every relayed chunk after commit. `feed` returns True when the chunk was progress (data,
    not only comments); `done` once the stream's final event passed (the relay sends nothing more of
    its own); `provider_error` when the provider reported a failure in the stream; `complete` when a
    stream that ended without its final event still had every part it needed (a `[DONE]` is added);
    `unterminated` when the body ended inside an event; `usage` the usage object it reported."""

    done: bool

    @property
    def provider_error(self) -> bool: ...
    @property
    def complete(self) -> bool: ...
    @property
    def unterminated(self) -> bool: ...
    @property
    def usage(self) -> dict[str, Any] | None: ...
    def feed(self, chunk: bytes) -> bool: ...
    def close(self) -> None: ...


class EventOutcome(NamedTuple):
    """What one parsed event says, as the failover verdict judges it."""

    error: bool  # an in-band error
    finished: tuple[int, ...]  # indices of the choices it finished
    usage: dict[str, Any] | None  # the usage object it carried, wherever in the event


EventJudge = Callable[[Any], EventOutcome]
"""(parsed event data) -> its outcome: the failover verdict's `stream_event_outcome`."""


class StreamWatch:
    """After commit, fed every relayed chunk: did the stream end (`done`), did the provider report an
    error in the stream (`provider_error`), which choices finished and what usage it reported
    (`finished`, `usage`), and was a chunk progress (data, not only comments)?

    Bytes are looked at first, so the common content chunk costs a few byte scans and no JSON parse:
    every chunk is scanned for `"error"` (an in-band error may come at any point) and for `[DONE]`;
    finish reasons and usage come at the end of a stream, so they are read from the last
    `RECENT_BLOCKS` chunks when it ends, and only events whose bytes show one are parsed."""

    __slots__ = (
        "_choices",
        "_cr",
        "_error",
        "_finished",
        "_judge",
        "_open_at_end",
        "_pending",
        "_recent",
        "_settled",
        "_skipping",
        "_usage",
        "done",
        "finish_reason",
    )

    def __init__(self, judge: EventJudge, choices: int = 1) -> None:
        self._judge = judge
        self._choices = choices  # how many choices a complete answer has (the request's `n`)
        self._pending = b""
        self._cr = False
        self._skipping = False  # the current event outgrew MAX_WATCHED_EVENT: wait for its end
        self._recent: deque[bytes] = deque(maxlen=RECENT_BLOCKS)
        self._settled = False
        self._open_at_end = False  # the body ended inside an event (no final blank line)
        self._finished: set[int] = set()
        self._usage: dict[str, Any] | None = None
        self.done = False
        self._error = False
        self.finish_reason: str | None = None  # the first choice's, once read (the stream's end is read at `usage`)

    @property
    def provider_error(self) -> bool:
        """The provider reported a failure in the stream: an error event, or a choice that finished with
        one (read when the stream ends, like the finish reasons: `abort`, `error`)."""
        self._settle()
        return self._error

    @property
    def unterminated(self) -> bool:
        """Part of an event is still waiting for its blank line (or was, when the body ended)."""
        return self._open_at_end or bool(self._pending.strip()) or self._skipping

    @property
    def finished(self) -> set[int]:
        """Indices of the choices that reported a `finish_reason` (read at the end of the stream)."""
        self._settle()
        return self._finished

    @property
    def complete(self) -> bool:
        """Every expected choice reported a `finish_reason`."""
        finished = self.finished
        return all(i in finished for i in range(self._choices))

    @property
    def usage(self) -> dict[str, Any] | None:
        """The `usage` object of the last event that carried one (read at the end of the stream)."""
        self._settle()
        return self._usage

    def feed(self, chunk: bytes) -> bool:
        """Take one relayed chunk; True when it carried data-event bytes (progress for the idle timer)."""
        if self._cr or chunk.find(b"\r") >= 0:  # `find`, not `in`: see `_may_matter`
            chunk, self._cr = _carry_cr(chunk, self._cr)
        data = self._pending + chunk if self._pending else chunk
        last = data.rfind(b"\n\n")
        if last < 0:
            return self._hold(data)
        if last + 2 == len(data):  # the common case: the chunk ends with its event, no copy
            complete, self._pending = data, b""
        else:
            complete, self._pending = data[: last + 2], data[last + 2 :]
        if self._skipping:
            self._skipping = False
            complete = complete[complete.find(b"\n\n") + 2 :]
        if not self.done:
            self._recent.append(complete)
            if complete.find(b'"error') >= 0 or complete.find(b'"base_resp"') >= 0:  # `error(s|_code)`, MiniMax
                self._usage = self._inspect_events(complete) or self._usage
            if complete.find(b"[DONE]") >= 0 and _is_done_line(complete):
                self.done = True
        return complete.startswith(b"data") or complete.find(b"\ndata") >= 0 or self._pending.startswith(b"data")

    def _hold(self, data: bytes) -> bool:
        if len(data) > MAX_WATCHED_EVENT:
            self._skipping, self._pending = True, data[-1:]
            return True
        self._pending = data
        return self._skipping or data.lstrip(b"\n").startswith(b"data")

    def _inspect_events(self, complete: bytes) -> dict[str, Any] | None:
        """Judge the events of these bytes that may matter; return the last usage object among them."""
        usage = None
        for block in complete.split(b"\n\n"):
            if len(block) > MAX_WATCHED_EVENT or not _may_matter(block):
                continue  # a large one is skipped whether it came in one read or in many
            event = parse_event(block)
            if event.data is None or is_done(event.data):
                continue
            try:
                payload = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                continue  # not ours to judge after commit: relayed as it came
            outcome = self._judge(payload)
            if 0 in outcome.finished and self.finish_reason is None:
                self.finish_reason = first_finish_reason(payload)
            self._error |= outcome.error
            self._finished.update(outcome.finished)
            usage = outcome.usage or usage
        return usage

    def _settle(self) -> None:
        """Read the recent chunks, newest first, until every expected choice is seen finished (a usage
        chunk comes after the finishing one, so it has been read by then); the newest usage wins, so
        usage a provider repeats in several chunks is counted once."""
        if self._settled:
            return
        self._settled = True
        newest: dict[str, Any] | None = None
        for block in reversed(self._recent):
            found = self._inspect_events(block)
            newest = newest or found
            if len(self._finished) >= self._choices:
                break
        self._usage = newest or self._usage

    def close(self) -> None:
        """The body ended: an unterminated last event is judged as if its blank line had come."""
        self._open_at_end = self.unterminated
        if self._pending.strip() and not self._skipping:
            self._pending, rest = b"", self._pending.rstrip(b"\n") + b"\n\n"
            self.feed(rest)
        self._pending = b""
