"""The mock provider as a plain ASGI app: route, apply the current fault, answer.

A healthy non-streaming request is answered straight away (the benchmarks' hot path). Anything
that waits (a stream, added latency, a slow first byte, a stall) runs beside a watch on the client,
so a client that leaves is noticed at once, counted in `/_mock/stats`, and its answer cancelled.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import orjson

from proxy.mock.answers import media, messages_api, responses_api
from proxy.mock.answers.routes import ROUTES as BASE_ROUTES
from proxy.mock.answers.routes import Answer, Call, error
from proxy.mock.control import handle_control
from proxy.mock.faults.modes import inject, send_answer
from proxy.mock.settings import Faults, MockConfig
from proxy.mock.state import MockState
from proxy.mock.wire import Exchange, Receive, Scope, Send, answer_unless_gone, read_body

ROUTES = {**BASE_ROUTES, **responses_api.ROUTES, **media.ROUTES, **messages_api.ROUTES}
MESSAGES = "/v1/messages"  # Anthropic's API: its key is `x-api-key`, and `anthropic-version` is required
MULTIPART = b"multipart/form-data"
_WAITING_FAULTS = frozenset(("down", "slow_first_byte", "stall", "cut"))


class MockApp:
    """An OpenAI-compatible fake provider. `state` may be changed while it serves (same loop only)."""

    def __init__(self, config: MockConfig | None = None, faults: Faults | None = None) -> None:
        self.state = MockState(config or MockConfig(), faults)
        self._headers = [(b"x-mock-provider", self.state.config.name.encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        body = await read_body(receive)
        exchange = Exchange(path, body, receive, send, self._headers)
        if path.startswith("/_mock/"):
            status, answer = handle_control(self.state, scope["method"], path, body)
            await exchange.respond(status, answer)
            return
        self.state.log.record(scope["method"], path, scope["query_string"], scope["headers"], body)
        await self._serve(exchange, scope)

    async def _serve(self, exchange: Exchange, scope: Scope) -> None:
        state = self.state
        faults = state.faults
        fault = state.schedule.draw(exchange.path)
        if fault != "none":
            state.log.record_fault(fault)
        payload = _parse_json(exchange.body) if scope["method"] == "POST" else None
        streaming = isinstance(payload, dict) and bool(payload.get("stream"))
        work = self._answer(exchange, scope, payload, fault=fault, faults=faults, streaming=streaming)
        if streaming or faults.latency_ms or fault in _WAITING_FAULTS:
            await answer_unless_gone(exchange, work, self._on_disconnect)
        else:
            await work

    async def _answer(
        self, exchange: Exchange, scope: Scope, payload: Any, *, fault: str, faults: Faults, streaming: bool
    ) -> None:
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if fault != "none" and await inject(exchange, fault, faults, streaming, self.state.config.name):
            return
        answer = self._route(scope, payload, faults, exchange.body)
        await send_answer(exchange, answer, fault, faults)

    def _route(self, scope: Scope, payload: Any, faults: Faults, body: bytes) -> Answer:
        config, path, method = self.state.config, scope["path"], scope["method"]
        refused = _refused(scope, config.api_key, config.name)
        if refused is not None:
            return refused
        content_type = _header(scope, b"content-type")
        form = content_type.startswith(MULTIPART)
        call = Call(config, None if form else payload, self.state.next_seq(), faults.chunks, body, content_type,
                    self.state.responses)  # fmt: skip
        route = ROUTES.get(path)
        if route is None:
            by_id = responses_api.route_by_id(call, method, path)
            return by_id if by_id is not None else error(404, f"mock {config.name} has no endpoint {path}")
        if route[0] != method:
            return error(405, f"{path} takes {route[0]}, not {method}")
        if payload is _INVALID and not form:
            return error(400, "the request body is not valid JSON")
        return route[1](call)

    def _on_disconnect(self, exchange: Exchange) -> None:
        self.state.log.record_disconnect(exchange.path, exchange.started, exchange.events_sent)


_INVALID: Any = object()


def _parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return _INVALID


def _header(scope: Scope, name: bytes) -> bytes:
    return next((value for key, value in scope["headers"] if key.lower() == name), b"")


def _refused(scope: Scope, api_key: str | None, name: str) -> Answer | None:
    """The 401 of a wrong key (taken as the mock's API takes it: `x-api-key` on Anthropic's routes,
    else a bearer token), or the 400 of an Anthropic request without `anthropic-version`."""
    if not scope["path"].startswith(MESSAGES):
        if api_key is None or hmac.compare_digest(_header(scope, b"authorization"), f"Bearer {api_key}".encode()):
            return None
        if scope["path"] == "/v1/models" and hmac.compare_digest(_header(scope, b"x-api-key"), api_key.encode()):
            return None  # the listing takes either API's key (an Anthropic-speaking provider lists its models too)
        return error(401, f"Incorrect API key provided to mock {name}")
    if api_key is not None and not hmac.compare_digest(_header(scope, b"x-api-key"), api_key.encode()):
        return messages_api.error(401, "invalid x-api-key")
    if not _header(scope, b"anthropic-version"):
        return messages_api.error(400, "anthropic-version: header is required")
    return None


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        kind = message["type"].rsplit(".", 1)[-1]  # startup | shutdown
        await send({"type": f"lifespan.{kind}.complete"})
        if kind == "shutdown":
            return
