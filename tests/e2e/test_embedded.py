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
