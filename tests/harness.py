"""Running the real proxy app on a real socket inside the test process.

`ProxyServer` serves `GatewayApp` with uvicorn in a thread of its own (its own event loop), so tests
talk to it over HTTP exactly as a client would, and can still look at its gateway's state.
`gateway_config` builds a config whose providers are mock providers on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx
import uvicorn

from proxy.config import Config, config_from_mapping
from proxy.http.app import GatewayApp, create_app
from proxy.http.head_guard import GuardedHttpToolsProtocol
from proxy.upstream.client import UpstreamClient
from tests.metric_reader import metric_value


def gateway_config(
    providers: Sequence[tuple[str, str]],
    models: Mapping[str, Sequence[str]] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    proxy: Mapping[str, Any] | None = None,
    prices: Mapping[str, tuple[float, float]] | None = None,
    apis: Mapping[str, str] | None = None,
    keys: Sequence[Mapping[str, Any]] = (),
) -> Config:
    """Providers as (slug, base_url); each model offered by the named providers as `<slug>/<model>`;
    `apis` names the providers that speak another API than OpenAI's (`{"claude": "anthropic"}`);
    `keys` are `[[keys]]` tables."""
    env = {"FAILOVER_DATA_DIR": _data_dir(), **(env or {})}  # catalog snapshots: never the repository's .failover
    provider_tables = []
    for slug, url in providers:
        key_env = f"{slug.upper().replace('-', '_')}_API_KEY"
        table = {"slug": slug, "name": slug.title(), "base_url": url, "api_key_env": key_env, "listing": "none"}
        if apis and slug in apis:
            table["api"] = apis[slug]
        provider_tables.append(table)
    model_tables = []
    for model, slugs in (models or {"gpt-4": [s for s, _ in providers]}).items():
        offers = []
        for slug in slugs:
            offer: dict[str, Any] = {"provider": slug, "provider_model_id": f"{slug}/{model}"}
            if prices and slug in prices:
                offer["pricing_prompt"], offer["pricing_completion"] = prices[slug]
            offers.append(offer)
        model_tables.append({"model_id": model, "offers": offers})
    settings = {"first_byte_timeout_s": 5, "stream_idle_timeout_s": 5, "deadline_s": 20, **(proxy or {})}
    data = {"proxy": settings, "providers": provider_tables, "models": model_tables, "keys": list(keys)}
    return config_from_mapping(data, "(test)", env)


_DATA_DIR: list[str] = []


def _data_dir() -> str:
    """A data folder of this test session's own (removed at exit)."""
    if not _DATA_DIR:
        import atexit
        import shutil
        import tempfile

        _DATA_DIR.append(tempfile.mkdtemp(prefix="gatewayz-test-data-"))
        atexit.register(shutil.rmtree, _DATA_DIR[0], True)
    return _DATA_DIR[0]


class ProxyServer:
    def __init__(
        self,
        config: Config,
        *,
        client: UpstreamClient | None = None,
        http: type[asyncio.Protocol] | None = None,
        grace_s: int = 2,
    ) -> None:
        self.app: GatewayApp = create_app(config, client=client)
        self.grace_s = grace_s  # how long a stop lets in-flight requests finish (`shutdown_grace_s` under serve)
        self.http = http or GuardedHttpToolsProtocol  # what `failover serve` runs
        self.config = config
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def gateway(self) -> Any:
        return self.app.gateway

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/v1"

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` with these labels, as `/metrics` shows them now."""
        return metric_value(httpx.get(f"{self.base}/metrics", timeout=10).text, name, **labels)

    def start(self) -> ProxyServer:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=0, loop="asyncio", http=self.http, lifespan="on",
            log_level="warning", access_log=False, timeout_graceful_shutdown=self.grace_s,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="proxy-under-test", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("proxy did not start")
            time.sleep(0.01)
        sockets = self._server.servers[0].sockets
        self.port = sockets[0].getsockname()[1]
        return self

    def _run(self) -> None:
        assert self._server is not None
        asyncio.run(self._server.serve())

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self) -> ProxyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class CapturedLogs(logging.Handler):
    """Every log record of the process while active, formatted, for secret-scanning tests."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @contextlib.contextmanager
    def installed(self) -> Iterator[CapturedLogs]:
        root = logging.getLogger()
        access = logging.getLogger("gatewayz.access")
        old = root.level, access.level
        root.addHandler(self)
        root.setLevel(logging.DEBUG)
        access.setLevel(logging.INFO)
        try:
            yield self
        finally:
            root.removeHandler(self)
            root.setLevel(old[0])
            access.setLevel(old[1])
