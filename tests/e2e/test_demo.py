"""`failover demo`: the scripted demo shows failover, in a database of its own next to the user's
catalog, and leaves no process behind however it ends (Ctrl-C, SIGTERM, SIGHUP, or killed)."""

from __future__ import annotations

import asyncio
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

USER_CONFIG = """
[[providers]]
slug = "mine"
name = "Mine"
base_url = "http://127.0.0.1:9/v1"
listing = "none"

[[models]]
model_id = "my-model"
offers = [{ provider = "mine", provider_model_id = "mine/my-model" }]
"""


def user_env(**extra: str) -> dict[str, str]:
    """A user's shell: no database named (the embedded one), no config variable; CI's REDIS_URL stays."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "FAILOVER_CONFIG", "FAILOVER_DATA_DIR")}
    return {**env, **extra}


def failover(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", *args],
        cwd=folder, env=env or user_env(), capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture
def project() -> Iterator[Path]:
    """A fresh project folder outside pytest's own temporary root: that root is made private (0700) by
    every pytest session that starts, and the embedded server runs as another user when tests run as
    root, so it must be able to reach its data folder."""
    path = Path(tempfile.mkdtemp(prefix="gatewayz-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name: state, ppid, ..."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def running(pid: int | None) -> bool:
    """Whether `pid` is a live process (a zombie waiting to be reaped is not)."""
    if pid is None or pid <= 0:  # initdb's bootstrap writes a negative pid
        return False
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def children(pid: int) -> list[int]:
    """Every live descendant of `pid`."""
    parents = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None and fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        kids = [child for child, parent in parents.items() if parent in frontier]
        found += kids
        frontier = kids
    return found


def postmaster(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def gone_within(pids: list[int | None], seconds: float) -> list[int | None]:
    """The pids still running after waiting up to `seconds` for all of them to end."""
    deadline = time.monotonic() + seconds
    while any(running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if running(p)]


async def provider_count(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM information_schema.tables WHERE table_name = 'providers'"))
    finally:
        await conn.close()


def test_demo_runs_next_to_a_user_catalog_without_touching_it(fresh_database_url: str, project: Path) -> None:
    tmp_path = project
    (tmp_path / "failover.toml").write_text(USER_CONFIG)
    assert failover(tmp_path, "migrate").returncode == 0
    synced = failover(tmp_path, "sync")
    assert synced.returncode == 0 and "Mine: 1 models synced" in synced.stdout, synced.stderr
    # the user also has a DATABASE_URL exported in this shell: the demo must not write there either
    demo = failover(tmp_path, "demo", "--once", env=user_env(DATABASE_URL=fresh_database_url))
    assert demo.returncode == 0, demo.stderr
    out = demo.stdout
    assert "failed over after 1 failed attempt(s)" in out
    assert "served by backupai" in out and "served by steadyai" in out
    assert 'gatewayz_failovers_total{from_provider="flakyai",model="gpt-4",reason="503"}' in out
    assert "streamed 7 chunks, in order" in out
    assert f"`source {Path(sys.prefix)}/bin/activate` puts the `failover` command on your PATH" in out
    assert f"its own embedded PostgreSQL in {tmp_path / '.failover' / 'demo' / 'pgdata'}" in out
    assert "Traceback" not in out + demo.stderr
    assert "demo-key-flaky" not in out + demo.stderr
    assert asyncio.run(provider_count(fresh_database_url)) == 0  # no table, let alone the demo's providers

    explained = failover(tmp_path, "explain", "my-model")
    assert explained.returncode == 0, explained.stderr
    assert "mine/my-model" in explained.stdout  # the user's catalog is intact and active
    check = failover(tmp_path, "sync", "--dry-run")
    assert "would be deactivated" not in check.stdout  # the demo's providers never entered it
    for pgdata in (tmp_path / ".failover" / "pgdata", tmp_path / ".failover" / "demo" / "pgdata"):
        assert not running(postmaster(pgdata)), pgdata  # each command stopped the server it started


class Demo:
    """`failover demo` (serving until stopped) in a folder, its output read line by line."""

    def __init__(self, folder: Path) -> None:
        self.pgdata = folder / ".failover" / "demo" / "pgdata"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "demo"],
            cwd=folder, env=user_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.children_seen: list[int | None] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.process.poll() is None, "".join(self.seen)
                continue
            self.seen.append(line)
            if text in line:
                return
        raise AssertionError(f"no {text!r} within {timeout} s: {''.join(self.seen)}")

    def children(self) -> list[int]:
        return children(self.process.pid)

    def stop(self) -> None:
        """However the test went: the demo killed, its children waited for, its pipe closed."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        gone_within(self.children_seen, 30)
        self.reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.mark.parametrize(
    ("sig", "when"),
    [
        (signal.SIGTERM, "Ctrl-C stops everything"),  # while serving after the script
        (signal.SIGHUP, "Ctrl-C stops everything"),
        (signal.SIGINT, "  proxy "),  # in the middle of the script
    ],
    ids=["SIGTERM", "SIGHUP", "SIGINT"],
)
def test_a_signal_ends_the_demo_and_everything_it_started(sig: signal.Signals, when: str, project: Path) -> None:
    demo = Demo(project)
    try:
        demo.wait_for(when)
        kids, server = demo.children(), postmaster(demo.pgdata)
        demo.children_seen = list(kids)
        assert kids and running(server), (kids, server)
        demo.process.send_signal(sig)
        assert demo.process.wait(timeout=60) in (0, 128 + sig, -sig)
        assert gone_within([*kids, server], 15) == []  # the proxy child and the embedded PostgreSQL
    finally:
        demo.stop()


def test_a_killed_demo_takes_its_proxy_along_and_the_next_command_adopts_its_database(project: Path) -> None:
    tmp_path = project
    demo = Demo(tmp_path)
    try:
        demo.wait_for("  proxy ")
        kids, server = demo.children(), postmaster(demo.pgdata)
        demo.children_seen = list(kids)
        assert kids
        demo.process.kill()  # a crash: no handler, no atexit runs
        demo.process.wait()
        assert gone_within(list(kids), 30) == []  # the proxy ends with its parent
        assert running(server)  # nobody could stop the database...
        adopted = failover(tmp_path, "migrate", env=user_env(FAILOVER_DATA_DIR=str(tmp_path / ".failover" / "demo")))
        assert adopted.returncode == 0, adopted.stderr
        assert f"reusing the server already running in {demo.pgdata} (pid {server})" in adopted.stderr
        assert f"ended without stopping it (pid {demo.process.pid})" in adopted.stderr
        assert gone_within([server], 15) == []  # ...until the next command knowingly took it over and stopped it
    finally:
        demo.stop()
