"""What an error body says, whatever envelope a provider wraps it in. Pure.

`read_error(body)` walks the body and keeps three things, lowercased: the *codes* (every `code`,
`type`, Google's `status`, a `reason`, MiniMax's `status_code`...), the *message* (every message-like
text, one sentence per line) and the *fields* the provider names structurally (OpenAI's `param`,
pydantic's `loc`, Google's `fieldViolations[].field`). The envelopes seen in the wild:

    {"error": {"message", "type", "code", "param"}}                OpenAI and most compatible servers
    {"error": {"message": "Provider returned error",
               "metadata": {"raw": "<the provider's own body>"}}}   OpenRouter (the raw body is read too)
    {"error": {"error": {...}}}                                    OpenRouter, doubly wrapped
    {"type": "error", "error": {"type", "message"}}                Anthropic
    {"object": "error", "message", "type", "code"}                 vLLM, Fireworks
    {"object": "error", "message": {"detail": [{"loc", "msg"}]}}   Mistral (pydantic errors)
    {"detail": "..."} or {"detail": [{"type", "loc", "msg"}]}      FastAPI, pydantic
    {"error": "text"}, {"code": "...", "error": "..."}             Ollama, TGI, xAI
    [{"error": {"code", "message", "status", "details"}}]          Google: a JSON array of errors
    {"errors": [{"message", "reason"}]}                            Google's inner list, Cloudflare
    {"message": "..."}                                             Mistral, Groq
    {"base_resp": {"status_code", "status_msg"}}                   MiniMax
    {"error_code", "error_msg"}                                    Baidu
    plain text or HTML                                             anything in front of a provider
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

MESSAGE_LIMIT = 4000  # characters of text worth reading
MAX_DEPTH = 8  # nesting worth walking (OpenRouter's raw body inside its own envelope is about 5 deep)
MESSAGE_KEYS = frozenset(
    {
        "message", "msg", "detail", "details", "error", "errors", "error_msg", "status_msg", "description",
        "title", "raw", "metadata", "innererror", "inner_error", "base_resp", "fieldviolations", "violations",
    }
)  # fmt: skip
CODE_KEYS = frozenset({"code", "type", "status", "reason", "error_type", "error_code", "status_code", "quotaid"})
FIELD_KEYS = frozenset({"param", "field", "loc"})
RETRY_KEYS = frozenset({"retrydelay"})  # Google's RetryInfo: "retryDelay": "59s"
CODE_SEPARATORS = re.compile(r"[_\-.]+")


@dataclass(frozen=True, slots=True)
class ErrorText:
    """What an error body says, lowercased. `code` and `type` are the outermost ones (a number
    becomes its digits); `codes` holds every code-like value found, with `_`, `-` and `.` read as
    spaces (`context_length_exceeded` -> `context length exceeded`)."""

    code: str = ""
    type: str = ""
    message: str = ""
    codes: tuple[str, ...] = ()
    fields: tuple[str, ...] = field(default=())


class _Collector:
    __slots__ = ("codes", "fields", "messages", "size")

    def __init__(self) -> None:
        self.codes: list[str] = []
        self.fields: list[str] = []
        self.messages: list[str] = []
        self.size = 0

    def text(self, value: str) -> None:
        if self.size < MESSAGE_LIMIT and value.strip():
            value = value[: MESSAGE_LIMIT - self.size].lower()
            self.messages.append(value)
            self.size += len(value) + 1

    def walk(self, value: Any, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            return
        if isinstance(value, dict):
            self.object(value, depth)
        elif isinstance(value, list):
            for item in value[:32]:
                self.walk(item, depth + 1)
        elif isinstance(value, str):
            self.string(value, depth)

    def string(self, value: str, depth: int) -> None:
        """A message string; one that is itself a JSON body (OpenRouter's `raw`) is walked."""
        head = value.lstrip()[:1]
        if head in ("{", "["):
            try:
                self.walk(orjson.loads(value), depth + 1)
                return
            except orjson.JSONDecodeError:
                pass
        self.text(value)

    def object(self, value: dict[str, Any], depth: int) -> None:
        loc = value.get("loc")
        if isinstance(loc, list) and isinstance(value.get("msg"), str):  # pydantic: the message names its field
            path = ".".join(str(part) for part in loc)
            self.fields.append(path.lower())
            self.text(f"{value['msg']}: {path}")
            self.walk_codes(value)
            return
        self.walk_codes(value)
        for key, item in value.items():
            lowered = key.lower()
            if lowered in MESSAGE_KEYS:
                self.walk(item, depth + 1)

    def walk_codes(self, value: dict[str, Any]) -> None:
        for key, item in value.items():
            lowered = key.lower()
            if lowered in CODE_KEYS and isinstance(item, str | int) and not isinstance(item, bool):
                self.codes.append(CODE_SEPARATORS.sub(" ", str(item).lower()).strip())
            elif lowered in FIELD_KEYS and isinstance(item, str) and item:
                self.fields.append(item.lower())
            elif lowered in RETRY_KEYS and isinstance(item, str):
                self.text(f"retry in {item}")


def read_error(body: bytes) -> ErrorText:
    """The codes, message and named fields of an error body, whatever its envelope (see the module
    docstring); a body that is not JSON is read as its text."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ErrorText(message=body[:MESSAGE_LIMIT].decode("utf-8", "replace").lower())
    collector = _Collector()
    collector.walk(parsed)
    outer = _outer(parsed)
    return ErrorText(
        code=_scalar(outer.get("code")),
        type=_scalar(outer.get("type")),
        message="\n".join(collector.messages),
        codes=tuple(dict.fromkeys(c for c in collector.codes if c)),
        fields=tuple(dict.fromkeys(collector.fields)),
    )


def _outer(parsed: Any) -> dict[str, Any]:
    """The error object whose `code` and `type` are the body's own: the innermost `error` object."""
    while isinstance(parsed, list) and parsed:
        parsed = parsed[0]
    if not isinstance(parsed, dict):
        return {}
    outer: dict[str, Any] = parsed
    inner = outer.get("error")
    while isinstance(inner, dict):
        outer, inner = inner, inner.get("error")
    return outer


def _scalar(value: Any) -> str:
    return str(value).lower() if isinstance(value, str | int) and not isinstance(value, bool) else ""
