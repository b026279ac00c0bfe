"""The proxied endpoints: which kind of offer serves each, and how its body and answer are read. Pure.

Every route that fails over is one row here; the handler, the app's router and the 404 hint all read
this table, so they cannot disagree.

- `form`: `json` (parsed once, `model` rewritten) or `multipart` (a form upload whose `model` field is
  rewritten per offer, the file kept once).
- `answer`: `json` (a JSON object, or server-sent events when `stream` is true), `document` (JSON, or
  the plain text some formats ask for, such as a transcript with `response_format: "text"`), or
  `binary` (audio bytes: judged by status and content type, streamed through as they come).
- `events`: how a stream's events are judged: `chat` (data-only chunks, `[DONE]`), `responses` (the
  Responses API's typed events, `proxy.upstream.responses_events`) or `transcript` (a streamed
  transcription: its first event checked as chat's, its end by `transcript.text.done`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Endpoint:
    upstream: str  # the path after the provider's base_url
    kind: str  # one of proxy.types.ENDPOINTS: only offers that serve it are tried
    form: str = "json"
    answer: str = "json"
    events: str = "chat"


PROXIED: dict[str, Endpoint] = {
    "/v1/chat/completions": Endpoint("/chat/completions", "chat"),
    "/v1/completions": Endpoint("/completions", "completions"),
    "/v1/embeddings": Endpoint("/embeddings", "embeddings"),
    "/v1/responses": Endpoint("/responses", "responses", events="responses"),
    "/v1/moderations": Endpoint("/moderations", "moderations"),
    "/v1/images/generations": Endpoint("/images/generations", "images"),
    "/v1/audio/speech": Endpoint("/audio/speech", "audio", answer="binary"),
    "/v1/audio/transcriptions": Endpoint(
        "/audio/transcriptions", "audio", form="multipart", answer="document", events="transcript"
    ),
    "/v1/audio/translations": Endpoint("/audio/translations", "audio", form="multipart", answer="document"),
}

RESPONSE_ROUTES = (
    "GET /v1/responses/{response_id}",
    "DELETE /v1/responses/{response_id}",
    "POST /v1/responses/{response_id}/cancel",
    "GET /v1/responses/{response_id}/input_items",
)
OTHER_ROUTES = ("GET /v1/models", "GET /v1/models/{model}")


def route_list() -> str:
    """Every route this proxy serves under /v1, for the 404 hint."""
    posts = [f"POST {path}" for path in PROXIED]
    return ", ".join([*posts, *RESPONSE_ROUTES, *OTHER_ROUTES])
