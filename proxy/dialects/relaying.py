"""What the relay asks of a stream spoken in another API than the offer's, and the ending of a
native Messages stream. Pure.

`proxy.http.relay.relay_stream` takes a `StreamTranslation` when the client reads a stream in
another shape than the chat chunks the relay ends by default: each upstream chunk goes out as
`feed(chunk)` returns it (possibly nothing yet, possibly several events: never the whole stream
buffered); a stream that ended complete but without its final event gets `finish(unterminated)`;
a stream that broke gets `failed(error)`, the client's own error event. The watch
(`proxy.upstream.sse.RelayWatch`) keeps judging the offer's bytes, in the offer's API.

- `NativeMessages`: a Messages stream relayed as it came (an Anthropic-speaking offer, a Messages
  client): only the endings are Anthropic's (`message_stop`; an `error` event).
- `proxy.dialects.messages_stream.MessagesFromChat`: a Chat stream as Messages events.
- `proxy.dialects.chat_stream.ChatFromMessages`: a Messages stream as Chat chunks.
"""

from __future__ import annotations

from typing import Protocol

from proxy.dialects.anthropic_verdict import event
from proxy.dialects.envelopes import error_event
from proxy.errors import UpstreamError

STREAM_ERROR = "api_error"  # the type of the error event that ends a broken stream
MESSAGE_STOP = event("message_stop", {"type": "message_stop"})


class StreamTranslation(Protocol):
    def feed(self, chunk: bytes) -> bytes: ...
    def finish(self, unterminated: bool) -> bytes: ...
    def failed(self, error: UpstreamError) -> bytes: ...


class NativeMessages:
    """A Messages stream passed through: its bytes as they came, Anthropic's endings."""

    __slots__ = ()

    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def finish(self, unterminated: bool) -> bytes:
        """The stop reason came but `message_stop` did not: it is added (after a blank line when the
        last event lacked its own)."""
        return (b"\n\n" if unterminated else b"") + MESSAGE_STOP

    def failed(self, error: UpstreamError) -> bytes:
        return b"\n\n" + error_event(STREAM_ERROR, error.message)
