"""The usage the proxy asked a stream for, kept out of what its client reads; the text it relayed, counted. Pure.

A chat or text completion stream reports its usage only when asked (`stream_options.include_usage`,
https://platform.openai.com/docs/api-reference/chat/create#chat-create-stream_options). When the
client did not ask, the proxy asks for it (`proxy.failover.usage_ask`) so that every stream is
priced, and `UsageStage`, the relay's first stage (`proxy.http.relay`), takes back out of the
provider's bytes, before anything else reads them, what the ask added:

- the usage-only final chunk (`"choices": []` and a `usage` object): the whole event is dropped;
- a `usage` member on a chunk that has choices (OpenAI sends `"usage":null` in every chunk of an
  asked stream; some servers put the usage object on the finishing choice chunk instead): the
  member is cut out of the event's bytes, the rest of the event left byte for byte, so the client
  reads what it would have read had nobody asked. (A usage a provider sends unasked, such as Groq's
  `x_groq.usage` or a choice's own `usage`, is not a top-level `usage` member: it stays.)

With OpenRouter's usage accounting (`"usage": {"include": true}`,
https://openrouter.ai/docs/use-cases/usage-accounting) the usage chunk is the client's: `account`
turns each top-level usage object into the one the client gets (its cost added,
`proxy.billing.usage_accounting`), and only the `null` members of the ask are cut out.

The stage also counts the bytes of the text it relayed, from which
`proxy.upstream.usage.estimated_usage` estimates a completion when the provider reported no usage:
for an offer known to refuse the ask, every text value (`text_bytes`: the JSON string values of
`content`, `text`, `arguments`, `reasoning_content` and `reasoning`, as sent, escapes included);
for one that took the ask (and will nearly always report usage, but may ignore it), only the main
text (`main_text_bytes`: `"content":"` values, or a text completion's `"text":"`), which costs a
third as much per chunk and leaves out reasoning and tool-call arguments in that rare estimate.

Cost: events are cut where the provider's blank lines are (any of `\\n\\n`, `\\r\\n\\r\\n`,
`\\r\\r`), an unfinished event held until its end comes (it is never sent in part, since it may be
the one dropped); a chunk whose bytes hold no `"usage"` costs a few byte scans, and only events
that carry a usage object are parsed (one per stream).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from proxy.upstream.sse import normalize, parse_event

USAGE_KEY = b'"usage"'
NULL_MEMBERS = (b',"usage":null', b', "usage": null')  # OpenAI's spelling, and a spaced JSON writer's
TEXT_KEYS = (b'"content":', b'"text":', b'"arguments":', b'"reasoning_content":', b'"reasoning":')
CONTENT_VALUE = b'"content":"'  # the common one, as OpenAI writes it
TEXT_VALUE = b'"text":"'  # a text completion's
USAGE_ONLY = (b'"choices":[]', b'"usage":{')  # the usage-only chunk, as OpenAI writes it
SEPARATORS = (b"\n\n", b"\r\n\r\n", b"\r\r")
BACKSLASH = 0x5C
Account = Callable[[dict[str, Any]], dict[str, Any]]


class UsageStage:
    """Fed the provider's chunks in order; returns what the client is sent for each.

    `strip`: the proxy asked for usage, the client did not: what the ask added is taken out (see the
    module docstring). `account`: the client asked for OpenRouter's usage accounting: each usage
    object becomes `account(usage)`, and the usage-only chunk is kept. `finish()` returns what is
    held of an event the body ended inside."""

    __slots__ = ("_account", "_drop", "_pending", "_strip", "_value", "text_bytes")

    def __init__(
        self, *, strip: bool, account: Account | None = None, all_text: bool = True, value: bytes = CONTENT_VALUE
    ) -> None:
        self._strip = strip
        self._value = None if all_text else value  # count only these values (`main_text_bytes`)
        self._drop = strip and account is None  # the usage-only chunk is not the client's
        self._account = account
        self._pending = b""
        self.text_bytes = 0  # bytes of text relayed so far (see the module docstring)

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk if self._pending else chunk
        if data.endswith(b"\n\n"):  # the common chunk: whole events
            self._pending = b""
            return self._events(data)
        end = _events_end(data)
        if end < 0:
            self._pending = data
            return b""
        if end == len(data):
            complete, self._pending = data, b""
        else:
            complete, self._pending = data[:end], data[end:]
        return self._events(complete)

    def finish(self) -> bytes:
        rest, self._pending = self._pending, b""
        return self._events(rest) if rest else b""

    def _events(self, complete: bytes) -> bytes:
        self.text_bytes += text_bytes(complete) if self._value is None else main_text_bytes(complete, self._value)
        if complete.find(USAGE_KEY) < 0:
            return complete
        if self._strip:
            for member in NULL_MEMBERS:
                if complete.find(member) >= 0:
                    complete = complete.replace(member, b"")
            if self._drop:
                complete = _without_usage_only(complete)
            if complete.find(USAGE_KEY) < 0:
                return complete
        return b"".join(self._event(block) for block in split_events(complete))

    def _event(self, block: bytes) -> bytes:
        """One event (its blank line included) as the client gets it."""
        if self._drop and block.find(USAGE_ONLY[0]) >= 0 and block.find(USAGE_ONLY[1]) >= 0:
            return b""  # the usage-only chunk, known by its bytes (no JSON string holds an unescaped quote)
        payload = _payload(block) if block.find(USAGE_KEY) >= 0 else None
        if payload is None or "usage" not in payload:
            return block
        usage = payload["usage"]
        if self._account is not None and isinstance(usage, dict):
            payload["usage"] = self._account(usage)
            return b"data: " + orjson.dumps(payload) + _separator(block)
        if self._drop and isinstance(usage, dict) and not payload.get("choices"):
            return b""  # the usage-only chunk
        if self._strip and (usage is None or self._drop):
            return without_member(block, USAGE_KEY)
        return block


def _without_usage_only(complete: bytes) -> bytes:
    """`complete` without OpenAI's usage-only chunk, found by its bytes (no JSON string holds an
    unescaped quote); other spellings are left to the parsed path."""
    at = complete.find(USAGE_ONLY[0])
    if at < 0 or complete.find(b"\r") >= 0:
        return complete
    start = complete.rfind(b"\n\n", 0, at)
    start = 0 if start < 0 else start + 2
    end = complete.find(b"\n\n", at)
    end = len(complete) if end < 0 else end + 2
    if complete.find(USAGE_ONLY[1], start, end) < 0:
        return complete
    return complete[:start] + complete[end:]


def _payload(block: bytes) -> dict[str, Any] | None:
    """The JSON object an event's data carries, or None."""
    data = parse_event(normalize(block).strip(b"\n")).data
    try:
        payload = orjson.loads(data) if data is not None else None
    except orjson.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None


def _events_end(data: bytes) -> int:
    """Where the last complete event of `data` ends (just past its blank line), or -1."""
    at = data.rfind(b"\n\n")
    end = at + 2 if at >= 0 else -1
    if data.find(b"\r") >= 0:
        for separator in SEPARATORS[1:]:
            at = data.rfind(separator)
            if at >= 0:
                end = max(end, at + len(separator))
    return end


def split_events(complete: bytes) -> list[bytes]:
    """Complete events, each with the blank line that ended it (joined, they are `complete` again)."""
    if complete.find(b"\r") < 0:
        events = complete.split(b"\n\n")
        tail = events.pop()
        return [event + b"\n\n" for event in events] + ([tail] if tail else [])
    events = []
    start = 0
    while start < len(complete):
        ends = [(at + len(s)) for s in SEPARATORS if (at := complete.find(s, start)) >= 0]
        end = min(ends) if ends else len(complete)
        events.append(complete[start:end])
        start = end
    return events


def _separator(block: bytes) -> bytes:
    return next((s for s in SEPARATORS if block.endswith(s)), b"\n\n")


def text_bytes(block: bytes) -> int:
    """Bytes of every text value of `block` (see the module docstring); a JSON string holds no
    unescaped quote, so a key is only ever found where it is a key."""
    return sum(_values(block, key) for key in TEXT_KEYS)


def main_text_bytes(block: bytes, value: bytes = CONTENT_VALUE) -> int:
    """Bytes of the `value` strings of `block` (`"content":"`, or a text completion's `"text":"`)
    only, as the common writer spells them: one scan per value and one more, where `text_bytes`
    makes five (each scan of a chunk costs about as much as the rest of its relay)."""
    total = 0
    at = block.find(value)
    while at >= 0:
        start = at + len(value)
        end = block.find(b'"', start)
        if end < 0:
            end = len(block)
        elif block[end - 1] == BACKSLASH:
            end = string_end(block, start)
        total += end - start
        at = block.find(value, end)
    return total


def _values(block: bytes, key: bytes) -> int:
    """Bytes of the string values of every `key` in `block`."""
    total = 0
    at = block.find(key)
    while at >= 0:
        at += len(key)
        if block[at : at + 1] == b" ":
            at += 1
        if block[at : at + 1] == b'"':
            end = string_end(block, at + 1)
            total += end - at - 1
            at = end
        at = block.find(key, at)
    return total


def string_end(text: bytes, start: int) -> int:
    """The index of the quote that closes the JSON string whose text begins at `start` (len(text) if none)."""
    end = text.find(b'"', start)
    while end > 0 and text[end - 1] == BACKSLASH:
        run = end - 1
        while run >= start and text[run] == BACKSLASH:
            run -= 1
        if (end - 1 - run) % 2 == 0:  # an even run of backslashes escapes itself, not the quote
            break
        end = text.find(b'"', end + 1)
    return end if end >= 0 else len(text)


def without_member(block: bytes, key: bytes) -> bytes:
    """`block` without the top-level member `key` of the JSON object it carries (the member's
    comma with it), every other byte unchanged; `block` itself when it has none."""
    start = block.find(b"{")
    if start < 0:
        return block
    span = _member_span(block, start, key)
    return block if span is None else block[: span[0]] + block[span[1] :]


def _member_span(text: bytes, start: int, key: bytes) -> tuple[int, int] | None:
    """(start, end) of the top-level `key: value` member of the object at `start`, with one comma."""
    depth, at = 0, start
    while at < len(text):
        byte = text[at]
        if byte == 0x22:  # a string: a key of the outer object when at depth 1
            end = string_end(text, at + 1)
            if depth == 1 and text[at : end + 1] == key:
                value = _skip_space(text, _skip_space(text, end + 1) + 1)  # past the colon
                return _with_comma(text, at, _value_end(text, value))
            at = end + 1
            continue
        if byte in b"{[":
            depth += 1
        elif byte in b"}]":
            depth -= 1
            if depth == 0:
                return None
        at += 1
    return None


def _skip_space(text: bytes, at: int) -> int:
    while at < len(text) and text[at] in b" \t\r\n":
        at += 1
    return at


def _value_end(text: bytes, at: int) -> int:
    """Just past the JSON value at `at` (an object, array, string, or a literal)."""
    if text[at : at + 1] == b'"':
        return string_end(text, at + 1) + 1
    if text[at : at + 1] not in (b"{", b"["):
        while at < len(text) and text[at] not in b",}] \t\r\n":
            at += 1
        return at
    depth = 0
    while at < len(text):
        byte = text[at]
        if byte == 0x22:
            at = string_end(text, at + 1)
        elif byte in b"{[":
            depth += 1
        elif byte in b"}]":
            depth -= 1
            if depth == 0:
                return at + 1
        at += 1
    return at


def _with_comma(text: bytes, start: int, end: int) -> tuple[int, int]:
    """The member's span with the comma that separates it: the one before it, else the one after."""
    before = start - 1
    while before >= 0 and text[before] in b" \t\r\n":
        before -= 1
    if before >= 0 and text[before] == 0x2C:
        return before, end
    after = _skip_space(text, end)
    if after < len(text) and text[after] == 0x2C:
        return start, _skip_space(text, after + 1)
    return start, end
