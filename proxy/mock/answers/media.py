"""The mock's moderations, image generation and audio endpoints, in OpenAI's shapes.

- `POST /v1/moderations`: one result per input, every category present; a text with "kill" in it is
  flagged as violence, anything else is not.
- `POST /v1/images/generations`: `n` images, as `b64_json` (a 1x1 PNG) or a `url`, per `response_format`.
- `POST /v1/audio/speech`: audio bytes (content type from `response_format`, default mp3) that are a
  deterministic function of the input, so a test can check every byte arrived.
- `POST /v1/audio/transcriptions` and `/translations`: a multipart upload; the transcript names the
  mock, the file's size and its SHA-256, so a test can check the file arrived whole. `response_format`
  `json` (default), `verbose_json`, or `text`/`srt`/`vtt` as plain text.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

import orjson

from proxy.errors import BadRequest
from proxy.failover.form_request import form_fields
from proxy.mock.answers.payloads import sse
from proxy.mock.answers.routes import Answer, Call, error

CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence",
    "violence/graphic",
)  # fmt: skip
PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
AUDIO_TYPES = {"mp3": b"audio/mpeg", "opus": b"audio/opus", "aac": b"audio/aac", "flac": b"audio/flac",
               "wav": b"audio/wav", "pcm": b"audio/pcm"}  # fmt: skip
SPEECH_BYTES = 64 * 1024


def moderations(call: Call) -> Answer:
    payload = call.payload
    if not isinstance(payload, dict) or not isinstance(payload.get("input"), str | list):
        return error(400, "missing or invalid 'input'")
    raw = payload["input"]
    texts = [raw] if isinstance(raw, str) else [str(item) for item in raw]
    results = [_moderation(text) for text in texts]
    model = payload.get("model") or "omni-moderation-latest"
    return Answer(body=orjson.dumps({"id": f"modr-{call.config.name}-{call.seq}", "model": model, "results": results}))


def _moderation(text: str) -> dict[str, Any]:
    violent = "kill" in text.lower()
    categories = {c: violent and c == "violence" for c in CATEGORIES}
    scores = {c: (0.93 if categories[c] else 0.0001) for c in CATEGORIES}
    applied = {c: ["text"] for c in CATEGORIES}
    return {"flagged": violent, "categories": categories, "category_scores": scores,
            "category_applied_input_types": applied}  # fmt: skip


def images(call: Call) -> Answer:
    payload = call.payload
    if not isinstance(payload, dict) or not isinstance(payload.get("prompt"), str):
        return error(400, "missing or invalid 'prompt'")
    n = payload.get("n", 1)
    if not isinstance(n, int) or not 1 <= n <= 10:
        return error(400, "'n' must be an integer between 1 and 10")
    as_url = payload.get("response_format") == "url"
    name = call.config.name
    data = [
        {"url": f"https://images.mock.invalid/{name}/{call.seq}-{i}.png"} if as_url
        else {"b64_json": base64.b64encode(PIXEL_PNG).decode()}
        for i in range(n)
    ]  # fmt: skip
    for item in data:
        item["revised_prompt"] = f"{payload['prompt']} (drawn by mock {name})"
    usage = {"input_tokens": len(payload["prompt"].split()), "output_tokens": 0, "total_tokens": 0}
    return Answer(body=orjson.dumps({"created": int(time.time()), "data": data, "usage": usage}))


def speech_bytes(name: str, text: str) -> bytes:
    """The audio this mock answers for `text`: its name, then a SHA-256 stream of the text."""
    seed = hashlib.sha256(f"{name}:{text}".encode()).digest()
    return (b"ID3" + name.encode() + seed * (SPEECH_BYTES // len(seed) + 1))[:SPEECH_BYTES]


def speech(call: Call) -> Answer:
    payload = call.payload
    if not isinstance(payload, dict) or not isinstance(payload.get("input"), str):
        return error(400, "missing or invalid 'input'")
    fmt = payload.get("response_format", "mp3")
    if fmt not in AUDIO_TYPES:
        return error(400, f"'response_format' must be one of {', '.join(AUDIO_TYPES)}")
    return Answer(body=speech_bytes(call.config.name, payload["input"]), content_type=AUDIO_TYPES[fmt])


def transcriptions(call: Call) -> Answer:
    try:
        spans = form_fields(call.body, call.content_type)
    except BadRequest as exc:
        return error(400, exc.message)
    fields = {name: call.body[start:end] for name, (start, end) in spans.items() if start >= 0}
    if "file" not in fields or not fields.get("model"):
        return error(400, "a transcription needs a 'file' and a 'model'")
    audio = fields["file"]
    text = (
        f"mock {call.config.name} heard {len(audio)} bytes sha256={hashlib.sha256(audio).hexdigest()} "
        f"as {fields['model'].decode('utf-8', 'replace')}"
    )
    if fields.get("stream", b"").strip().lower() == b"true":
        return Answer(events=tuple(_transcript_events(text)))
    fmt = fields.get("response_format", b"json").decode("utf-8", "replace")
    if fmt in ("text", "srt", "vtt"):
        return Answer(body=text.encode(), content_type=b"text/plain; charset=utf-8")
    if fmt == "verbose_json":
        body = {"task": "transcribe", "language": "english", "duration": 1.0, "text": text, "segments": []}
        return Answer(body=orjson.dumps(body))
    return Answer(body=orjson.dumps({"text": text, "usage": {"type": "duration", "seconds": 1}}))


def _transcript_events(text: str) -> list[bytes]:
    """A streamed transcription: one `transcript.text.delta` per word, then `transcript.text.done`
    with the text and the usage in tokens (no `[DONE]`)."""
    words = text.split(" ")
    events = [sse({"type": "transcript.text.delta", "delta": w + (" " if i + 1 < len(words) else "")})
              for i, w in enumerate(words)]  # fmt: skip
    usage = {"type": "tokens", "input_tokens": 12, "output_tokens": len(words), "total_tokens": 12 + len(words)}
    events.append(sse({"type": "transcript.text.done", "text": text, "usage": usage}))
    return events


ROUTES = {
    "/v1/moderations": ("POST", moderations),
    "/v1/images/generations": ("POST", images),
    "/v1/audio/speech": ("POST", speech),
    "/v1/audio/transcriptions": ("POST", transcriptions),
    "/v1/audio/translations": ("POST", transcriptions),
}
