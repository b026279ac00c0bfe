"""What a mock provider is (`MockConfig`, fixed at start) and how it misbehaves (`Faults`, changeable).

Fault settings keep the names of the `failover mock-provider` flags (`retry-after` and `retry_after`
are the same setting). `faults_from_mapping` validates a mapping of them, as sent to
`POST /_mock/faults` or given to `MockProvider(...)`, and raises `ValueError` naming the bad key.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# Every fault and what it does on the wire (shown by `failover mock-provider --help`; see `proxy.mock.faults.modes`).
FAULT_MEANINGS = {
    "none": "answer normally",
    "down": "close the connection without answering (as a crashed or unreachable server)",
    "status": "answer --status (default 500) with an OpenAI-shaped error; a 429 or 503 also carries Retry-After",
    "rate_limit": "answer 429 with Retry-After (--retry-after, default 1 s; also an HTTP date or '1500ms')",
    "slow_first_byte": "wait --first-byte-ms before the status line, then answer normally",
    "stall": "stream: send 2 events, then nothing, forever; otherwise never answer",
    "cut": "stream: send 2 events, then close without [DONE]; otherwise send half the body and close",
    "garbage": "answer 200 with a body that is not JSON, or a stream of malformed server-sent events",
    "error_event": "stream: send 2 events, then an error event (Anthropic's overloaded_error on /v1/messages); "
    "otherwise a 200 whose body is an error",
}
FAULTS = tuple(FAULT_MEANINGS)


@dataclass(frozen=True, slots=True)
class Faults:
    """How a mock misbehaves. `fault` hits a `fail_rate` share of the `/v1` requests under `paths`."""

    fault: str = "none"
    status: int = 500  # the answer of the `status` fault
    retry_after: str | None = None  # "2", an HTTP date, "date+5" (5 s from now) or "1500ms"
    retry_after_ms: float | None = None  # a `retry-after-ms` header, as OpenAI sends
    fail_rate: float = 1.0  # deterministic spread (1/k = every k-th request) unless `seed` is set
    seed: int | None = None  # draw hits from random.Random(seed) instead
    latency_ms: float = 0.0  # before every /v1 answer, fault or not
    first_byte_ms: float = 0.0  # `slow_first_byte`: before the status line
    chunk_interval_ms: float = 0.0  # between two SSE events
    chunks: int = 5  # content chunks of a streamed answer (and pieces of a non-streamed one)
    after_chunks: int = 2  # `stall`/`cut` of a stream: SSE events sent first (role chunk included)
    paths: tuple[str, ...] = ()  # path prefixes the fault applies to; empty: every /v1 path

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "paths": list(self.paths)}


@dataclass(frozen=True, slots=True)
class MockConfig:
    """What a mock provider is called, what it lists, and what it checks."""

    name: str = "mock"
    models: tuple[str, ...] = ("gpt-4", "gpt-3.5-turbo")
    listing: str = "openai"  # openai | openrouter | together
    pricing_prompt: str = "0.00003"  # USD per token, as OpenRouter writes it (together: per million)
    pricing_completion: str = "0.00006"
    context_length: int = 8192
    # published by the openrouter listing (top_provider, supported_parameters, architecture) when set
    max_completion_tokens: int | None = None
    supported_parameters: tuple[str, ...] | None = None
    input_modalities: tuple[str, ...] | None = None
    api_key: str | None = None  # when set, any other `Authorization` gets 401
    strict_models: bool = False  # when set, a model it does not list gets 404 model_not_found
    refuse_stream_options: bool = False  # when set, a request with `stream_options` gets Azure OpenAI's 400
    history: int = 100  # requests kept for /_mock/stats

    def __post_init__(self) -> None:
        if self.listing not in ("openai", "openrouter", "together"):
            raise ValueError(f"listing must be 'openai', 'openrouter' or 'together', not {self.listing!r}")
        if not self.name or "/" in self.name:
            raise ValueError(f"name must be a non-empty word, not {self.name!r}")


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def _non_negative(value: object) -> float:
    number = _number(value)
    if not number >= 0:
        raise ValueError(f"expected a number >= 0, got {value!r}")
    return number


def _count(value: object) -> int:
    number = _non_negative(value)
    if number != int(number):
        raise ValueError(f"expected a whole number, got {value!r}")
    return int(number)


def _fault(value: object) -> str:
    if value not in FAULTS:
        raise ValueError(f"expected one of {', '.join(FAULTS)}, got {value!r}")
    return str(value)


def _status(value: object) -> int:
    status = _count(value)
    if not 200 <= status <= 599:
        raise ValueError(f"expected an HTTP status from 200 to 599, got {value!r}")
    return status


def _rate(value: object) -> float:
    rate = _number(value)
    if not 0 <= rate <= 1:
        raise ValueError(f"expected a share between 0 and 1, got {value!r}")
    return rate


def _optional(convert: Callable[[object], Any]) -> Callable[[object], Any]:
    return lambda value: None if value is None else convert(value)


def _paths(value: object) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(p, str) for p in items):
        raise ValueError(f"expected a path prefix or a list of them, got {value!r}")
    return tuple(items)


_CONVERTERS: dict[str, Callable[[object], Any]] = {
    "fault": _fault,
    "status": _status,
    "retry_after": _optional(str),
    "retry_after_ms": _optional(_non_negative),
    "fail_rate": _rate,
    "seed": _optional(_count),
    "latency_ms": _non_negative,
    "first_byte_ms": _non_negative,
    "chunk_interval_ms": _non_negative,
    "chunks": _count,
    "after_chunks": _count,
    "paths": _paths,
}


def faults_from_mapping(settings: Mapping[str, object], base: Faults | None = None) -> Faults:
    """`base` (default: no fault) with the given settings; `ValueError` names a bad or unknown key."""
    changes: dict[str, Any] = {}
    for key, value in settings.items():
        name = key.replace("-", "_")
        convert = _CONVERTERS.get(name)
        if convert is None:
            raise ValueError(f"unknown fault setting {key!r} (known: {', '.join(_CONVERTERS)})")
        try:
            changes[name] = convert(value)
        except ValueError as exc:
            raise ValueError(f"fault setting {key!r}: {exc}") from exc
    return dataclasses.replace(base or Faults(), **changes)


ANSWER_SHAPE = ("latency_ms", "chunk_interval_ms", "chunks")
"""Settings of how a mock answers rather than how it fails: fault control keeps them as started."""


def replacing_faults(settings: Mapping[str, object], startup: Faults) -> Faults:
    """What `POST /_mock/faults` sets: the named settings, every other fault setting at its default (the
    start-up fault is replaced, not merged into: `{"fault": "down"}` drops every request whatever
    `--fail-rate` the mock started with), and the answer's shape (`ANSWER_SHAPE`) as started unless named."""
    shape = Faults(**{name: getattr(startup, name) for name in ANSWER_SHAPE})
    return faults_from_mapping(settings, shape)


def faults_from_args(args: argparse.Namespace) -> Faults:
    """The start-up faults given by the `failover mock-provider` flags (every flag named like a setting)."""
    names = [name for name in _CONVERTERS if getattr(args, name, None) is not None]
    return faults_from_mapping({name: getattr(args, name) for name in names})


def config_from_args(args: argparse.Namespace) -> MockConfig:
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    return MockConfig(name=args.name, models=models, listing=args.listing)


CONTROL_HELP = """\
Change faults while it runs (the runtime control endpoint; settings use the flag names):
  curl -X POST http://HOST:PORT/_mock/faults -d '{"fault": "rate_limit", "retry_after": "30"}'
  GET /_mock/faults      the current faults
  POST /_mock/faults     replace the faults: named settings take the given values, the other fault
                         settings their defaults (latency, chunks and their interval stay as started)
  DELETE /_mock/faults   back to the start-up faults
  GET /_mock/stats       requests per path, faults injected, disconnects, the last requests
  DELETE /_mock/stats    forget all that"""


def help_epilog() -> str:
    """What `--help` shows after the options: each fault's meaning, then the control endpoint."""
    width = max(len(name) for name in FAULT_MEANINGS)
    faults = "\n".join(f"  {name:<{width}}  {meaning}" for name, meaning in FAULT_MEANINGS.items())
    return f"Faults (--fault; --fail-rate says which share of requests it hits):\n{faults}\n\n{CONTROL_HELP}"
