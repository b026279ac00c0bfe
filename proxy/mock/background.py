"""Serve an ASGI app with uvicorn on a thread of its own, with an event loop of its own.

Start and stop take milliseconds: the socket is bound before the thread starts (so the port is known
and connections queue at once), and stopping drops every open connection instead of waiting for
stalled answers, then joins the thread. Nothing is left running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import uvicorn

T = TypeVar("T")


class BackgroundServer:
    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app, self._host, self._requested_port = app, host, port
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port = port

    def start(self, timeout: float = 5.0) -> None:
        """Bind, start serving, and return once connections are accepted; re-raise a start-up error."""
        if self._thread is not None:
            raise RuntimeError("this server has already been started")
        self._sock = _listening_socket(self._host, self._requested_port)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name=f"mock-provider:{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            self.stop()
            raise RuntimeError(f"the server on port {self.port} did not start") from self._error

    def call(self, func: Callable[[], T], timeout: float = 5.0) -> T:
        """Run `func` on the server's loop (where the app's state lives) and return its result."""
        loop = self._loop
        if loop is None or not loop.is_running():
            raise RuntimeError("the server is not running")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(func())
            except BaseException as exc:  # handed to the calling thread, not swallowed
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Drop every connection, stop serving, join the thread. Safe to call twice."""
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is not None and stopping is not None and loop.is_running():
            loop.call_soon_threadsafe(stopping.set)
        if thread is not None:
            thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
        self._loop = self._stopping = None

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(self._serve())
        except BaseException as exc:  # reported by start(); a thread has no one else to tell
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        assert self._sock is not None
        config = uvicorn.Config(
            self._app,
            http="httptools",
            ws="none",
            lifespan="off",
            log_config=None,  # leave the host process's logging alone
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            server_header=False,
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[self._sock])
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        await self._stopping.wait()
        await _close(server)


async def _close(server: uvicorn.Server, grace: float = 2.0) -> None:
    """uvicorn's own shutdown polls every 0.1 s and waits for stalled answers; this drops them."""
    for listener in server.servers:
        listener.close()
    state = server.server_state
    for connection in list(state.connections):
        connection.transport.abort()
    if state.tasks:  # answers see their client gone and end; none can start now
        _, leftovers = await asyncio.wait(set(state.tasks), timeout=grace)
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
    for listener in server.servers:
        await listener.wait_closed()


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
