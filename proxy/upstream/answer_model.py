"""The `model` of an answer, named as the client asked: the canonical model, whatever offer served.

Providers answer with their own id (`openai/gpt-4` from one, `gpt-4-0613` from another), so a client
that reads `model` (for a cost lookup, a log, a cache key) would see it change with the offer that
happened to serve. With `[proxy] answer_model = "canonical"` the proxy writes the canonical model
(the `x-gatewayz-model` header's) in its place, in a whole JSON answer and in every event of a stream.

Pure functions over bytes, so that nothing else in an answer changes (no re-encoding: key order,
spacing, numbers and everything after the model are the provider's bytes):
- `rewrite_json(body, model)`: a JSON answer's own `model` (a Responses object's included);
- `StreamRewrite`: the same in a stream, fed chunk by chunk as they come (the relay sends what `feed`
  and `finish` return): each event's `model`, and a Responses API event's `response.model`
  (`response.created` ... `response.completed`).

A stream is cut anywhere by the network; an SSE event is only dispatched at its blank line, so the
bytes after a chunk's last line ending (a line not yet complete) are held and sent with the next
chunk: the client gets every event as early as before, and a `model` never spans two chunks here.
Only the answer's own `model` is rewritten (top level, or a Responses event's `response`), never a
nested one (OpenRouter's `openrouter_metadata` lists endpoints with their `model`s).

What it costs (it runs on every chunk of every stream, so it is counted: `bench.instructions`): a
stream whose first events name the canonical model already, nothing (`StreamRewrite.needed`); any
other, one `bytes.replace` per chunk once its first event taught how the provider writes its model
(a provider writes every event of a stream alike: the same model id, the same spacing), when that
event holds no other `"model"`; else each line that names one is handled on its own. Only that first
event is parsed (orjson), and its field is looked for by skipping the JSON's strings (`_containers`)
only when it holds several `"model"` keys.
"""

from __future__ import annotations

import re

import orjson

KEY = b'"model"'
_VALUE_AFTER_KEY = rb'"model"\s*:\s*'
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]:]')
TOP_LEVEL: list[bytes | None] = [None]  # the keys of the containers around a top-level field
IN_RESPONSE: list[bytes | None] = [None, b'"response"']  # ... around a Responses event's `response.model`


def _model_of(document: object) -> str | None:
    """The model a decoded answer or event names: its own `model`, or its `response`'s."""
    if not isinstance(document, dict):
        return None
    found = document.get("model")
    if isinstance(found, str):
        return found
    response = document.get("response")
    if isinstance(response, dict) and isinstance(response.get("model"), str):
        return str(response["model"])
    return None


def _containers(text: bytes, end: int) -> list[bytes | None]:
    """The keys under which the containers enclosing offset `end` of a JSON text were opened (None for
    the outermost one, or an array's element): strings are skipped whole, so no brace inside one counts."""
    stack: list[bytes | None] = []
    last = key = None
    for token in _TOKEN.finditer(text, 0, end):
        found = token.group()
        if found[0] == 0x22:  # a string: a key if a colon follows
            last = found
        elif found == b":":
            key = last
        elif found in (b"{", b"["):
            stack.append(key)
            key = None
        elif stack:
            stack.pop()
    return stack


def _model_field(text: bytes, named: str) -> tuple[int, int] | None:
    """Where `"model": "<named>"`, the answer's own model (top level, or a Responses event's `response`),
    is in `text`, with the provider's spacing; None when it is nowhere there. With a single `"model"` in
    `text` (a decoded answer that names `named`) that one is it."""
    compact = KEY + b":" + orjson.dumps(named)
    if text.count(KEY) == 1:
        at = text.find(compact)
        if at >= 0:
            return at, at + len(compact)
    for found in re.finditer(_VALUE_AFTER_KEY + re.escape(orjson.dumps(named)), text):
        if _containers(text, found.start()) in (TOP_LEVEL, IN_RESPONSE):
            return found.span()
    return None


def _replacement(pattern: bytes, model: str) -> bytes:
    """`pattern` (`"model"`, its separator, the provider's value) with `model` as the value."""
    return pattern[: pattern.index(b'"', len(KEY))] + orjson.dumps(model)


def rewrite_json(body: bytes, model: str, named: str | None = None) -> bytes:
    """`body` (a JSON answer) with the `model` it names set to `model`; `named` is the provider's value
    when the caller already parsed it. Anything that is not such a JSON answer comes back unchanged."""
    if KEY not in body:
        return body
    if named is None:
        try:
            named = _model_of(orjson.loads(body))
        except orjson.JSONDecodeError:
            return body
    if named is None or named == model:
        return body
    span = _model_field(body, named)
    if span is None:
        return body
    start, end = span
    return body[:start] + _replacement(body[start:end], model) + body[end:]


def _line_end(data: bytes) -> int:
    """The offset just past the last line ending of `data` (SSE: `\\n`, `\\r\\n` or `\\r`); 0 for none."""
    return max(data.rfind(b"\n"), data.rfind(b"\r")) + 1


class StreamRewrite:
    """Rewrites the `model` of every event of one stream to `model`, chunk by chunk (`feed`, then
    `finish` with the last chunk). Bytes are only ever held until their line is complete."""

    __slots__ = ("_held", "_pattern", "_replacement", "_single", "model")

    def __init__(self, model: str) -> None:
        self.model = model
        self._held = b""
        self._pattern = b""  # the provider's `"model": "<id>"`, as its events write it (b"": not seen yet)
        self._replacement = b""
        self._single = False  # its events hold no other `"model"`: a chunk is rewritten by one replace

    @classmethod
    def needed(cls, first: bytes, model: str) -> StreamRewrite | None:
        """A rewrite for the stream whose first events (held until its first output) are `first`; None
        when they name `model` already (a provider keeps one model id through a stream: nothing to do
        for any chunk of it)."""
        count = first.count(KEY)
        if count and count == first.count(KEY + b":" + orjson.dumps(model)):
            return None
        return cls(model)

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send for `chunk`: its complete lines, rewritten; an incomplete last line waits."""
        if self._held or chunk[-1:] != b"\n":  # a chunk that ends an event (the common one) skips this
            chunk = self._complete_lines(chunk)
        if self._single:  # the common case, once the first event taught how the provider names its model
            return chunk.replace(self._pattern, self._replacement)
        return self._rewrite(chunk) if KEY in chunk else chunk

    def finish(self, chunk: bytes = b"") -> bytes:
        """The last bytes of the stream: what was held, and `chunk`, rewritten."""
        data, self._held = self._held + chunk, b""
        if self._single:
            return data.replace(self._pattern, self._replacement)
        return self._rewrite(data) if KEY in data else data

    def _complete_lines(self, chunk: bytes) -> bytes:
        """`chunk` after what was held, up to its last line ending; the rest is held for the next one."""
        if self._held:
            chunk, self._held = self._held + chunk, b""
        end = _line_end(chunk)
        if end < len(chunk):
            chunk, self._held = chunk[:end], chunk[end:]
        return chunk

    def _rewrite(self, data: bytes) -> bytes:
        if not self._pattern:
            self._learn(data)
            if self._single:
                return data.replace(self._pattern, self._replacement)
        return b"".join(self._line(line) for line in data.splitlines(keepends=True))

    def _learn(self, data: bytes) -> None:
        """How the provider writes its model, from the first line of `data` that names one other than
        the canonical model: the bytes to replace, and whether that event holds no other `"model"`."""
        at = data.find(KEY)
        while at >= 0:
            start = max(data.rfind(b"\n", 0, at), data.rfind(b"\r", 0, at)) + 1
            end = data.find(b"\n", at)
            line = data[start : len(data) if end < 0 else end]
            span = self._field(line)
            if span is not None:
                self._pattern = line[span[0] : span[1]]
                self._replacement = _replacement(self._pattern, self.model)
                self._single = line.count(KEY) == 1
                return
            at = -1 if end < 0 else data.find(KEY, end)

    def _field(self, line: bytes) -> tuple[int, int] | None:
        """Where a `data:` line's JSON names its own model, when that is not the canonical model."""
        if not line.startswith(b"data:"):
            return None
        try:
            named = _model_of(orjson.loads(line[5:]))
        except orjson.JSONDecodeError:
            return None
        return None if named is None or named == self.model else _model_field(line, named)

    def _line(self, line: bytes) -> bytes:
        """One line (events with several `"model"`s, or models that change): its own model rewritten."""
        if KEY not in line:
            return line
        if self._pattern and line.count(KEY) == 1 and self._pattern in line:
            return line.replace(self._pattern, self._replacement, 1)
        span = self._field(line)
        if span is None:
            return line
        return line[: span[0]] + _replacement(line[span[0] : span[1]], self.model) + line[span[1] :]
