"""A multipart form request (audio transcriptions and translations): found once, rewritten per offer.

The form is parsed once with python-multipart (the parser Starlette uses), only to find where each
field's value lies in the body. Forwarding to an offer sends the body as three pieces, the bytes
before the `model` value, the offer's model id, the bytes after it, all views of the one buffer
read from the client: the uploaded file is never copied, and the form's boundary and other fields
go out unchanged. Raises `BadRequest` for a body that is not a multipart form or has no `model`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from proxy.errors import BadRequest
from proxy.failover.client_request import MAX_MODEL_LENGTH, parse_preferences
from proxy.types import NO_PREFERENCES, Preferences

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class FormRequest:
    model: str
    raw: bytes | bytearray = field(repr=False)  # the body as read, never changed
    model_span: Span
    prefs: Preferences = NO_PREFERENCES
    stream: bool = False  # the form's `stream` field is "true": the answer is relayed as events

    def encode_for(self, provider_model_id: str) -> tuple[bytes | memoryview, ...]:
        view = memoryview(self.raw)
        start, end = self.model_span
        return (view[:start], provider_model_id.encode(), view[end:])


class _Fields:
    """python-multipart callbacks that note each part's name and where its value lies in the body."""

    def __init__(self, raw: bytes | bytearray) -> None:
        self.raw = raw
        self.spans: dict[str, Span] = {}
        self.header_name = b""
        self.header_value = b""
        self.name: str | None = None
        self.span: Span | None = None

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda data, start, end: self.header(data, start, end, value=False),
            "on_header_value": lambda data, start, end: self.header(data, start, end, value=True),
            "on_header_end": self.header_end,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
        }

    def part_begin(self) -> None:
        self.name, self.span = None, None
        self.header_name = self.header_value = b""

    def header(self, data: bytes, start: int, end: int, *, value: bool) -> None:
        if value:
            self.header_value += data[start:end]
        else:
            self.header_name += data[start:end]

    def header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            _, options = parse_options_header(self.header_value)
            name = options.get(b"name")
            self.name = name.decode("utf-8", "replace") if name is not None else None
        self.header_name = self.header_value = b""

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if data is not self.raw:  # a piece the parser held back and replays from its own buffer
            self.span = (-1, -1)
        elif self.span is None:
            self.span = (start, end)
        elif self.span[1] == start:
            self.span = (self.span[0], end)
        else:
            self.span = (-1, -1)

    def part_end(self) -> None:
        if self.name is not None:
            self.spans.setdefault(self.name, self.span or (0, 0))


def form_fields(raw: bytes | bytearray, content_type: bytes) -> dict[str, Span]:
    """Each field's name -> (start, end) of its value in `raw`; (-1, -1) when not one piece."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise BadRequest("this endpoint takes a multipart/form-data body (a file upload)")
    fields = _Fields(raw)
    parser = MultipartParser(boundary, fields.callbacks())  # type: ignore[arg-type]
    try:
        parser.write(raw)  # type: ignore[arg-type]  # typed bytes; it only indexes, slices and finds in it
        parser.finalize()
    except MultipartParseError as exc:
        raise BadRequest(f"the request body is not a valid multipart form: {exc}") from None
    return fields.spans


def parse_form(raw: bytes | bytearray, content_type: bytes, provider_header: str | None = None) -> FormRequest:
    spans = form_fields(raw, content_type)
    span = spans.get("model")
    if span is None:
        raise BadRequest("you must provide a model parameter", param="model")
    start, end = span
    model = raw[start:end].decode("utf-8", "replace") if start >= 0 else ""
    if not model.strip() or len(model) > MAX_MODEL_LENGTH:
        raise BadRequest("model must be a non-empty string of at most 256 characters", param="model")
    prefs = parse_preferences(None, provider_header)
    stream_start, stream_end = spans.get("stream", (0, 0))
    stream = bytes(raw[stream_start:stream_end]).strip().lower() == b"true" if stream_start >= 0 else False
    return FormRequest(model=model, raw=raw, model_span=span, prefs=prefs, stream=stream)
