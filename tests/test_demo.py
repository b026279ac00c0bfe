"""`failover demo --once`: the scripted demo runs end to end and shows failover."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_once_shows_failover(fresh_database_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": fresh_database_url, "FAILOVER_DATA_DIR": str(tmp_path)}
    env.pop("FAILOVER_CONFIG", None)
    # Without Redis: the demo's provider slugs and key prefix are the same on every run, so a shared
    # Redis would hand this run the cooldowns and circuits of a run less than 30 s before it.
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "demo", "--once"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "failed over after 1 failed attempt(s)" in out
    assert "served by backupai" in out and "served by steadyai" in out
    assert 'gatewayz_failovers_total{from_provider="flakyai",model="gpt-4",reason="503"}' in out
    assert "streamed 7 chunks, in order" in out
    assert "Traceback" not in out + done.stderr
    assert "demo-key-flaky" not in out + done.stderr
