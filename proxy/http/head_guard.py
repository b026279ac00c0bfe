"""uvicorn's httptools protocol with the two limits it lacks: a request head's size and its time.

uvicorn on httptools keeps a request line and headers of any length, and waits for them forever:
one client can make the proxy hold memory without bound (a 50 MB header line is kept whole), or hold
connections open by sending a header byte now and then (slow-loris). `GuardedHttpToolsProtocol`
answers 431 once a request's head passes `max_head_bytes`, and 408 when a connection has not sent a
complete head within `head_timeout_s` of connecting or of starting a request; both then close the
connection. Idle keep-alive connections keep uvicorn's own timeout, and the body is the handler's
to bound (`max_body_bytes`, and `deadline_s` to arrive).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from proxy.http.answers import error_body

REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = 64 * 1024
    head_timeout_s = 10.0

    _head_bytes = 0
    _in_body = False
    _heads_seen = 0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_body:
            super().data_received(data)
            return
        heads = self._heads_seen
        super().data_received(data)
        if self._heads_seen == heads and not self.transport.is_closing():  # all of this chunk is head
            self._arm_head_timer()  # (the common whole-request chunk never arms it)
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(431, f"the request line and headers are larger than {self.max_head_bytes} bytes")

    def on_headers_complete(self) -> None:
        self._in_body, self._head_bytes = True, 0
        self._heads_seen += 1
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_body = False

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_body and not self.transport.is_closing():
            self._refuse(408, f"no complete request head within {self.head_timeout_s:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` unless an answer is already on its way, then close the connection."""
        if self.cycle is None or self.cycle.response_complete:
            code = "request_timeout" if status == 408 else "request_header_too_large"
            body = error_body(message, "invalid_request_error", code)
            head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % (
                status, REASONS[status], len(body))
            self.transport.write(head + b"connection: close\r\n\r\n" + body)
        self.transport.close()
