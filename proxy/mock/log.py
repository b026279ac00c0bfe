"""What a mock provider saw: requests per path, the last few requests, faults injected, disconnects.

Recording is cheap (raw bytes appended to a bounded deque); decoding happens only when a test asks
for `snapshot()`, the body of `GET /_mock/stats`.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class SeenRequest:
    at: float
    method: str
    path: str
    query: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "method": self.method,
            "path": self.path,
            "query": self.query.decode("latin-1"),
            "headers": _header_dict(self.headers),
            "body": _decode_body(self.body),
        }


@dataclass(frozen=True, slots=True)
class Disconnect:
    """A client that went away before its answer was complete."""

    path: str
    at: float  # time.time()
    at_monotonic: float  # time.monotonic(): the same clock in every process of this machine
    after_ms: float  # since the request arrived
    events_sent: int  # SSE events it had received

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "at": self.at,
            "at_monotonic": self.at_monotonic,
            "after_ms": self.after_ms,
            "events_sent": self.events_sent,
        }


class RequestLog:
    def __init__(self, history: int) -> None:
        self._recent: deque[SeenRequest] = deque(maxlen=history)
        self._paths: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._disconnects: list[Disconnect] = []

    def record(self, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self._paths[path] += 1
        self._recent.append(SeenRequest(time.time(), method, path, query, tuple(headers), body))

    def record_fault(self, fault: str) -> None:
        self._faults[fault] += 1

    def record_disconnect(self, path: str, started: float, events_sent: int) -> None:
        now = time.monotonic()
        after_ms = (now - started) * 1000
        self._disconnects.append(Disconnect(path, time.time(), now, after_ms, events_sent))

    def clear(self) -> None:
        self._recent.clear()
        self._paths.clear()
        self._faults.clear()
        self._disconnects.clear()

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": sum(self._paths.values()),
            "paths": dict(self._paths),
            "faults_injected": dict(self._faults),
            "disconnects": len(self._disconnects),
            "disconnect_log": [d.to_json() for d in self._disconnects],
            "recent": [r.to_json() for r in self._recent],
        }


def _header_dict(headers: tuple[tuple[bytes, bytes], ...]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        merged[name] = f"{merged[name]}, {value}" if name in merged else value
    return merged


def _decode_body(body: bytes) -> Any:
    """The parsed JSON body; the text when it is not JSON; None when empty."""
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")
