"""`failover serve`: the proxy on uvicorn (uvloop, httptools), one or several worker processes.

With `DATABASE_URL` unset the embedded PostgreSQL is started first and its URL handed to the
workers through the environment. SIGTERM stops accepting connections, lets in-flight requests
finish for up to `shutdown_grace_s` (what is still open then ends with the `proxy_shutdown` error),
then the lifespan stops every background task, and the process exits 0 through its exit handlers,
so that an embedded PostgreSQL it started is stopped (as after Ctrl-C). SIGHUP reloads the config in every worker
(`proxy.http.reload`). The Prometheus multiprocess folder is emptied at start (`proxy.runtime.multiproc`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import math
import os
import signal
import sys
import tempfile
from types import FrameType
from typing import TextIO

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from proxy.config import load_config
from proxy.http.app import GatewayApp, create_app
from proxy.http.head_guard import GuardedHttpToolsProtocol
from proxy.listen import ensure_can_listen
from proxy.runtime import multiproc
from proxy.store.database import database_url

# A young-generation collection every 10,000 net allocations instead of 700 (the default).
GC_YOUNG_THRESHOLD = 10_000


def app_from_environment() -> GatewayApp:
    """The uvicorn factory: config from $FAILOVER_CONFIG, database from $DATABASE_URL."""
    app = create_app(load_config())
    batched = [h for h in logging.getLogger("gatewayz.access").handlers if isinstance(h, BatchedStreamHandler)]
    if not batched:  # a worker process of `serve --workers N` starts with logging unconfigured
        configure_logging()
        batched = [h for h in logging.getLogger("gatewayz.access").handlers if isinstance(h, BatchedStreamHandler)]
    app.gateway.accounting.write_access = batched[0].write_line
    app.reload_on_sighup = True
    app.flush_access = batched[0].flush
    tune_gc()
    return app


def tune_gc() -> None:
    """Keep the cyclic garbage collector off the request path's back (measured in bench/PROFILE.md).

    With the defaults, requests in flight (each a few hundred objects, alive across several young
    collections) are promoted and trigger full collections of the whole heap, about 60,000 objects
    of imported modules that never die: 10% of the CPU at load and 30-40 ms pauses. `freeze()` moves
    what exists now (modules, the app) out of the collector's sight for good, and a higher young
    threshold lets a request's objects die by reference counting before a collection sees them.
    Cyclic garbage is still collected, just in larger batches."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


class BatchedStreamHandler(logging.StreamHandler[TextIO]):
    """Writes lines in batches: on the event loop, a line waits at most `delay_s` for the next ones,
    so the access log costs one `write` per batch instead of a `write` and a `flush` per request.
    Off the loop (start-up, shutdown) a line is written at once; `flush()` writes what waits."""

    MAX_PENDING = 1000

    def __init__(self, stream: TextIO, delay_s: float = 0.05) -> None:
        super().__init__(stream)
        self.delay_s = delay_s
        self._pending: list[str] = []
        self._scheduled = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # logging's own contract: a bad record is reported, never raised
            self.handleError(record)
            return
        self.write_line(line)

    def write_line(self, line: str) -> None:
        """One line, already formatted, for this stream."""
        self._pending.append(line)
        if self._scheduled and len(self._pending) < self.MAX_PENDING:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or len(self._pending) >= self.MAX_PENDING:
            self.flush()
            return
        self._scheduled = True
        loop.call_later(self.delay_s, self.flush)

    def flush(self) -> None:
        self.acquire()
        try:
            self._scheduled = False
            if self._pending:
                text = "\n".join(self._pending) + "\n"
                self._pending.clear()
                self.stream.write(text)
            self.stream.flush()
        finally:
            self.release()


def configure_logging() -> None:
    # A log record need not know which thread, process or source line made it: nothing here
    # formats those, and looking them up costs more than the access line itself.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    handler = BatchedStreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("gatewayz.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("gatewayz.reload").setLevel(logging.INFO)


def run_serve(args: argparse.Namespace) -> int:
    """The CLI: start the embedded database if needed, then serve until SIGTERM or Ctrl-C."""
    unwind_on_sigterm()
    try:
        return _serve(args)
    except Terminated:  # before uvicorn served: the start-up was cut short
        return 128 + signal.SIGTERM


def _serve(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.config:
        os.environ["FAILOVER_CONFIG"] = str(args.config)
    if config.database_url is None:
        os.environ["DATABASE_URL"] = database_url(config)
    if os.environ.get(multiproc.ENV):
        os.makedirs(os.environ[multiproc.ENV], exist_ok=True)
        multiproc.empty_folder(os.environ[multiproc.ENV])  # an operator's folder: nothing of an earlier run
    elif args.workers > 1:
        os.environ[multiproc.ENV] = tempfile.mkdtemp(prefix="gatewayz-metrics-")
    host = args.host or config.proxy.host
    port = args.port if args.port is not None else config.proxy.port
    ensure_can_listen(host, port)  # before saying "listening": a busy port is one line, not a traceback
    configure_logging()
    for warning in config.key_warnings():
        print(f"failover serve: warning: {warning}", file=sys.stderr)
    print(f"failover proxy listening on http://{host}:{port}/v1 ({args.workers} worker(s))", file=sys.stderr)
    settings = uvicorn.Config(
        "proxy.http.server:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=args.workers,
        loop="uvloop",
        http=GuardedHttpToolsProtocol,  # httptools, with a bound on request heads
        access_log=False,
        server_header=False,
        log_level="warning",
        timeout_graceful_shutdown=int(config.proxy.shutdown_grace_s),
        timeout_keep_alive=math.ceil(config.proxy.keep_alive_s),  # see `ProxySettings.keep_alive_s`
        lifespan="on",
    )
    if args.workers > 1:
        ReloadingMultiprocess(settings, sockets=[settings.bind_socket()]).run()
        return 0
    server = uvicorn.Server(settings)
    with contextlib.suppress(Terminated):  # uvicorn's own SIGTERM, raised again after its graceful shutdown
        server.run()
    return 0 if server.started else STARTUP_FAILURE


class Terminated(Exception):
    """SIGTERM, raised where the main thread is, so that the stack unwinds and exit handlers run."""


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signal.Signals(signum).name)


def unwind_on_sigterm() -> None:
    """SIGTERM unwinds the main thread instead of ending the process on the spot. uvicorn handles the
    signal while it serves (a graceful shutdown), then raises it again once it is done; with the default
    handler that second SIGTERM would kill the process before its exit handlers run, leaving an
    embedded PostgreSQL it started running. Before serving (the embedded server starting) the same
    handler ends the start-up cleanly."""
    signal.signal(signal.SIGTERM, _terminated)


class ReloadingMultiprocess(Multiprocess):
    """uvicorn's worker supervisor, except that SIGHUP is passed on to every worker, which reloads the
    config in place (`GatewayApp.reload`): no worker is replaced, so none loses its cooldowns, circuits
    or requests in flight, and each logs what it applied and what needs a restart."""

    def handle_hup(self) -> None:
        for process in self.processes:
            if process.pid is not None:
                with contextlib.suppress(ProcessLookupError):  # a worker that just died is replaced anyway
                    os.kill(process.pid, signal.SIGHUP)
