"""Whether this process can listen on an address, asked before a server says it is listening.

uvicorn (and Prometheus' `start_http_server`) find a busy port only once they bind, after start-up
messages were printed, and report it as an `OSError`; `ensure_can_listen` binds a throw-away socket
the way they do (`SO_REUSEADDR`, so a port in TIME_WAIT is not refused) and turns a refusal into
`CannotListen`: one line that names the address and what to change, exit code 1.
"""

from __future__ import annotations

import errno
import socket

from proxy.errors import CannotListen


def ensure_can_listen(host: str, port: int, flag: str = "--port") -> None:
    """Raise `CannotListen` when `host:port` cannot be bound now (busy, not an address of this host)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror} (check the host)") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise CannotListen(listen_error(host, port, exc, flag)) from None


def listen_error(host: str, port: int, exc: OSError, flag: str = "--port") -> str:
    """The one line for a failed bind of `host:port`."""
    where = f"cannot listen on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"{where}: the port is already in use (stop what uses it, or pick another {flag})"
    if exc.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need privileges; pick another {flag})"
    return f"{where}: {exc.strerror or exc}"
