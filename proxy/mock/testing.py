"""Mock providers for tests: real HTTP on loopback, steered and inspected from the test's own thread.

    with MockProvider("groq", fault="status", status=503) as groq:
        ...                                  # point the proxy at groq.url ("http://127.0.0.1:PORT/v1")
        groq.set_faults(fault="stall")       # replaces the start-up fault (its fail rate, status...)
        groq.reset()                         # the start-up faults again
        assert groq.stats()["paths"]["/v1/chat/completions"] == 2

Fault settings are those of `proxy.mock.settings.Faults`; a bad one raises `ValueError` in the caller.
"""

from __future__ import annotations

import atexit
import socket
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from proxy.mock.app import MockApp
from proxy.mock.background import BackgroundServer
from proxy.mock.settings import MockConfig, faults_from_mapping, replacing_faults


class MockProvider:
    """One mock provider on 127.0.0.1 (a free port unless `port` is given), serving until `stop()`."""

    def __init__(
        self,
        name: str = "mock",
        *,
        port: int = 0,
        models: Sequence[str] = ("gpt-4", "gpt-3.5-turbo"),
        listing: str = "openai",
        api_key: str | None = None,
        strict_models: bool = False,
        refuse_stream_options: bool = False,
        pricing_prompt: str = "0.00003",
        pricing_completion: str = "0.00006",
        context_length: int = 8192,
        max_completion_tokens: int | None = None,
        supported_parameters: Sequence[str] | None = None,
        input_modalities: Sequence[str] | None = None,
        history: int = 100,
        **faults: object,
    ) -> None:
        self.name = name
        self.config = MockConfig(
            name=name,
            models=tuple(models),
            listing=listing,
            pricing_prompt=pricing_prompt,
            pricing_completion=pricing_completion,
            context_length=context_length,
            max_completion_tokens=max_completion_tokens,
            supported_parameters=None if supported_parameters is None else tuple(supported_parameters),
            input_modalities=None if input_modalities is None else tuple(input_modalities),
            api_key=api_key,
            strict_models=strict_models,
            refuse_stream_options=refuse_stream_options,
            history=history,
        )
        self.startup_faults = faults_from_mapping(faults)
        self.app = MockApp(self.config, self.startup_faults)
        self._server = BackgroundServer(self.app, "127.0.0.1", port)

    def start(self) -> MockProvider:
        self._server.start()
        return self

    def stop(self) -> None:
        """Drop open connections (stalled answers included) and stop; safe to call twice."""
        self._server.stop()

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        """The base URL an OpenAI client takes: `http://127.0.0.1:PORT/v1`."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self) -> str:
        """Where `/_mock/*` lives: `http://127.0.0.1:PORT`."""
        return f"http://127.0.0.1:{self.port}"

    def set_faults(self, **settings: object) -> None:
        """Replace the faults as `POST /_mock/faults` does: fault settings not named take their defaults;
        the answer's shape (latency, chunks, their interval) keeps its start-up values."""
        faults = replacing_faults(settings, self.startup_faults)
        self._server.call(lambda: self.app.state.set_faults(faults))

    def reset(self) -> None:
        """Back to the start-up faults (`DELETE /_mock/faults`)."""
        self._server.call(self.app.state.reset_faults)

    def stats(self) -> dict[str, Any]:
        """What `GET /_mock/stats` answers."""
        return self._server.call(self.app.state.stats)

    def reset_stats(self) -> None:
        self._server.call(self.app.state.log.clear)

    def wait_for_requests(self, count: int = 1, timeout: float = 2.0) -> dict[str, Any]:
        """Poll the stats until `count` /v1 requests have arrived; return them, or raise `TimeoutError`."""
        return self._wait_for("requests", count, timeout)

    def wait_for_disconnects(self, count: int = 1, timeout: float = 2.0) -> dict[str, Any]:
        """Poll the stats until `count` clients have left mid-answer; return them, or raise `TimeoutError`."""
        return self._wait_for("disconnects", count, timeout)

    def _wait_for(self, key: str, count: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats[key] >= count:
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"mock {self.name}: {stats[key]} {key}, wanted {count}")
            time.sleep(0.005)

    def __enter__(self) -> MockProvider:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"MockProvider({self.name!r}, url={self.url!r})"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_reserved: list[socket.socket] = []
_reserved_lock = threading.Lock()


def refused_url() -> str:
    """A base URL where every connection is refused: a port held bound but never listening."""
    with _reserved_lock:
        if not _reserved:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            _reserved.append(sock)
            atexit.register(sock.close)
        port = _reserved[0].getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
