"""`serve --workers N` metrics: a dead worker's gauges do not linger in `/metrics`, and an
operator-set `PROMETHEUS_MULTIPROC_DIR` is emptied at start (no count carried over a restart)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.mmap_dict import MmapedDict

from proxy.mock.testing import free_port, refused_url
from tests.e2e.test_serve import wait_ready

CONFIG = """
[proxy]
circuit_failure_threshold = 1
circuit_cooldown_s = 3
[[providers]]
slug = "a"
name = "A"
base_url = "{a}"
listing = "none"
[[providers]]
slug = "b"
name = "B"
base_url = "{b}"
listing = "none"
priority = 1
[[models]]
model_id = "gpt-4"
offers = [{{ provider = "a", provider_model_id = "gpt-4" }}, {{ provider = "b", provider_model_id = "gpt-4" }}]
"""
BODY = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}


@contextmanager
def serve(tmp_path: Path, database_url: str, folder: Path, urls: dict[str, str]) -> Iterator[tuple[int, int]]:
    """`failover serve --workers 2` with its metrics in `folder`; yields (port, pid)."""
    config = tmp_path / "failover.toml"
    config.write_text(CONFIG.format(**urls))
    port = free_port()
    env = {
        **os.environ,
        "FAILOVER_CONFIG": str(config),
        "DATABASE_URL": database_url,
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
    }
    env.pop("REDIS_URL", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_ready(port, child)
        yield port, child.pid
    finally:
        child.terminate()
        child.wait(timeout=20)


def sample(port: int, prefix: str) -> list[str]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return [line for line in text.splitlines() if line.startswith(prefix)]


def circuit_open_in_files(folder: Path) -> dict[int, float]:
    """pid -> the value of gatewayz_circuit_open for provider a, read from each worker's own file."""
    found = {}
    for path in folder.glob("gauge_livemax_*.db"):
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            if '"gatewayz_circuit_open"' in key and '"a"' in key:
                found[int(path.stem.rsplit("_", 1)[1])] = value
    return found


def wait_for(check: Any, timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"not within {timeout} s: {check}")


def test_a_killed_workers_open_circuit_does_not_linger(
    mock_provider: Any, fresh_database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "metrics"
    urls = {"a": refused_url(), "b": mock_provider("b").url}
    with serve(tmp_path, fresh_database_url, folder, urls) as (port, _):
        for _ in range(10):  # new connections: both workers are likely to see a refuse and open a's circuit
            assert httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=BODY, timeout=10).status_code == 200
        assert wait_for(
            lambda: any(
                line.endswith(" 1.0") for line in sample(port, 'gatewayz_circuit_open{model="gpt-4",provider="a"}')
            ),
            10,
        )
        opened = wait_for(lambda: [pid for pid, value in circuit_open_in_files(folder).items() if value == 1.0], 10)
        os.kill(opened[0], signal.SIGKILL)
        # after the cooldown no live worker has a's circuit open (half-open, or a fresh replacement)
        time.sleep(3)
        lines = wait_for(
            lambda: [
                x for x in sample(port, 'gatewayz_circuit_open{model="gpt-4",provider="a"}') if x.endswith(" 0.0")
            ],
            15,
        )
        assert lines and all(x.endswith(" 0.0") for x in sample(port, "gatewayz_circuit_open{"))
        assert opened[0] not in circuit_open_in_files(folder)


def test_an_operator_set_folder_is_emptied_at_start(
    mock_provider: Any, fresh_database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "metrics"
    urls = {"a": mock_provider("a").url, "b": mock_provider("b").url}
    for _ in range(2):  # the same folder over two runs: the second counts only its own requests
        with serve(tmp_path, fresh_database_url, folder, urls) as (port, _):
            for _ in range(5):
                httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=BODY, timeout=10)
            lines = sample(port, 'gatewayz_requests_total{model="gpt-4",outcome="ok"')
            assert lines and lines[0].endswith(" 5.0"), lines
