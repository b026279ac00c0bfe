"""The embedded PostgreSQL ends with the command that started it, however that command is stopped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_demo import gone_within, postmaster, running, user_env


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    """One project folder for the module's tests (the embedded database is created once), outside
    pytest's private temporary root (see `tests.test_demo.project`)."""
    path = Path(tempfile.mkdtemp(prefix="gatewayz-test-"))
    path.chmod(0o755)
    (path / "failover.toml").write_text("")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_to_health_stops_the_embedded_database_it_started(sig: signal.Signals, folder: Path) -> None:
    env = {k: v for k, v in user_env().items() if k != "REDIS_URL"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "health", "--interval", "1"],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    pgdata = folder / ".failover" / "pgdata"
    try:
        deadline = time.monotonic() + 60
        while not running(postmaster(pgdata)) and time.monotonic() < deadline:
            assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
            time.sleep(0.1)
        server = postmaster(pgdata)
        assert running(server)
        time.sleep(1)  # into its rounds
        worker.send_signal(sig)
        assert worker.wait(timeout=30) in (0, 128 + sig, -sig)
        assert gone_within([server], 15) == []
        assert worker.stderr is not None
        assert "Traceback" not in worker.stderr.read()
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate()
    assert os.path.exists(pgdata / "PG_VERSION")  # the data stays for the next run


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_to_serve_stops_the_embedded_database_it_started(workers: int, folder: Path) -> None:
    import httpx

    from proxy.mock.testing import free_port

    env = {k: v for k, v in user_env().items() if k not in ("REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")}
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve", "--port", str(port), "--workers", str(workers)],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    pgdata = folder / ".failover" / "pgdata"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert serve.poll() is None and time.monotonic() < deadline, serve.stderr.read() if serve.stderr else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        server = postmaster(pgdata)
        assert running(server)
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0  # a graceful stop is a clean exit
        assert gone_within([server], 15) == []
    finally:
        if serve.poll() is None:
            serve.kill()
        log = serve.communicate()[1]
    assert "Traceback" not in log, log
