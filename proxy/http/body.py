"""The request body, read whole and bounded: by size (413 once it is known to be over the limit,
never holding more) and by time (408 when it has not all arrived), an upload's into one buffer."""

from __future__ import annotations

import asyncio

from proxy.errors import BadRequest, BodyTooLarge, ClientDisconnected, RequestTimeout
from proxy.types import Message, Receive


async def read_body(
    receive: Receive, headers: dict[bytes, bytes], limit: int, timeout_s: float, upload: bool = False
) -> bytes | bytearray:
    """The whole body, refusing (413) as soon as it is known to be over `limit`, never holding more, and
    (408) when it has not all arrived within `timeout_s`: a client trickling its body holds nothing for long.
    An `upload` (a form with a file) of declared length is written into one buffer of that size as it
    arrives, so the file is never held twice (the pieces and their join)."""
    declared = headers.get(b"content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("Content-Length is not a number")
        if int(declared) > limit:
            raise BodyTooLarge(f"the request body is larger than this proxy's limit of {limit} bytes")
    if upload and declared is not None:
        try:
            async with asyncio.timeout(timeout_s):
                return await _receive_into(receive, int(declared))
        except TimeoutError:
            raise RequestTimeout(f"the request body did not arrive within {timeout_s:g} s") from None
    chunks: list[bytes] = []
    size = 0
    if body_in_hand(receive):  # the body (or its first part) has arrived: taking it cannot wait, no timer
        size = _take(await receive(), chunks, size, limit)
        if size < 0:
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    try:
        async with asyncio.timeout(timeout_s):
            while size >= 0:
                size = _take(await receive(), chunks, size, limit)
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout_s:g} s") from None
    return b"".join(chunks)


def body_in_hand(receive: Receive) -> bool:
    """Whether uvicorn already holds request body bytes for this request, so that `receive()` returns
    without waiting (its cycle's `message_event` is set). Anything else, another server included, is
    "not known": the caller then reads under its timeout."""
    event = getattr(getattr(receive, "__self__", None), "message_event", None)
    return isinstance(event, asyncio.Event) and event.is_set()


def _take(message: Message, chunks: list[bytes], size: int, limit: int) -> int:
    """Add one `http.request` message's bytes to `chunks`; the new size, or -1 once the body is complete."""
    if message["type"] == "http.disconnect":
        raise ClientDisconnected("the client went away while sending its body")
    chunk = message.get("body", b"")
    size += len(chunk)
    if size > limit:
        raise BodyTooLarge(f"the request body is larger than this proxy's limit of {limit} bytes")
    chunks.append(chunk)
    return size if message.get("more_body", False) else -1


async def _receive_into(receive: Receive, size: int) -> bytearray:
    """A body of declared `size` (already checked against the limit), filled in place."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    filled = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("the client went away while sending its body")
        chunk = message.get("body", b"")
        if filled + len(chunk) > size:
            raise BadRequest("the request body is longer than its Content-Length")
        view[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
        if not message.get("more_body", False):
            if filled != size:
                raise BadRequest("the request body is shorter than its Content-Length")
            view.release()
            return buffer
