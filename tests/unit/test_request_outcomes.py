"""Every outcome of a proxied request, in process (the app called as ASGI, a fake upstream): the
answer, its headers, the attempts list, the access line and the metrics agree, read from one record.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from proxy.http.app import GatewayApp
from tests.metric_reader import metric_value
from tests.unit.asgi_client import Reply, request
from tests.unit.fake_upstream import Answer, FakeUpstream, chunk
from tests.unit.test_attempt_loop import HELLO, gateway


def app_of(scripts: dict[str, list[Answer]], **kwargs: Any) -> tuple[GatewayApp, list[str], FakeUpstream]:
    """The app (`create_app(client=...)`'s seam) over a fake upstream, and its access lines as written."""
    built, fake = gateway(scripts, **kwargs)
    app = GatewayApp(built.config, client=fake)
    lines: list[str] = []
    app.gateway.accounting.write_access = lines.append
    return app, lines, fake


def lines_of(raw: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw]


def metric(app: GatewayApp, name: str, **labels: str) -> float:
    return metric_value(app.gateway.metrics.exposition(), name, **labels)


async def chat(app: GatewayApp, **extra: Any) -> Reply:
    return await request(app, "POST", "/v1/chat/completions", {**HELLO, **extra})


async def test_served_after_a_failover() -> None:
    app, raw, _ = app_of({"a": [Answer.error(503, "busy")], "b": [Answer()]})
    reply = await chat(app)
    assert reply.status == 200 and reply.json()["choices"][0]["message"]["content"] == "hi"
    assert reply.headers["x-gatewayz-provider"] == "b" and reply.headers["x-gatewayz-attempts"] == "2"
    [line] = lines_of(raw)
    assert (line["status"], line["outcome"], line["tried"]) == (200, "ok", ["a:503", "b:ok"])
    assert line["request_id"] == reply.headers["x-request-id"]
    assert metric(app, "gatewayz_tokens_total", provider="b", kind="completion") == 5


async def test_every_offer_failed_is_a_503_listing_the_records_attempts() -> None:
    app, raw, _ = app_of({"a": [Answer.error(503, "busy")], "b": [Answer(refuse=True)]})
    reply = await chat(app)
    assert reply.status == 503 and reply.headers["x-should-retry"] == "false"
    assert [(a["provider"], a["status"]) for a in reply.json()["error"]["attempts"]] == [("a", "503"), ("b", "connect_error")]
    [line] = lines_of(raw)
    assert (line["status"], line["outcome"], line["attempts"]) == (503, "all_providers_failed", 2)
    assert metric(app, "gatewayz_requests_total", outcome="all_providers_failed") == 1


async def test_the_clients_own_mistake_is_passed_through_byte_for_byte() -> None:
    refusal = Answer(400, b'{"error": {"message": "messages must be an array", "type": "invalid_request_error"}}')
    app, raw, _ = app_of({"a": [refusal], "b": [Answer()]})
    reply = await chat(app)
    assert (reply.status, reply.body) == (400, b'{"error": {"message": "messages must be an array", "type": "invalid_request_error"}}')
    assert reply.headers["x-gatewayz-provider"] == "a" and reply.headers["x-gatewayz-attempts"] == "1"
    [line] = lines_of(raw)
    assert (line["status"], line["outcome"]) == (400, "upstream_400")


async def test_a_refused_request_names_the_model_it_asked_for() -> None:
    app, raw, fake = app_of({"a": [Answer()]})
    unknown = await request(app, "POST", "/v1/chat/completions", {**HELLO, "model": "gpt-5"})
    broken = await request(app, "POST", "/v1/chat/completions", b'{"model": "gpt-4", "messages": ')
    assert (unknown.status, unknown.json()["error"]["code"]) == (404, "model_not_found")
    assert broken.status == 400
    assert [(line["status"], line["model"], line["outcome"]) for line in lines_of(raw)] == [
        (404, "gpt-5", "model_not_found"),
        (400, "", "invalid_request"),
    ]
    assert fake.sent == []


async def test_a_complete_stream_is_relayed_and_counted_once_it_ends() -> None:
    stream = Answer.stream(chunk("Hel"), chunk("lo"), chunk(finish="stop"), b"data: [DONE]\n\n")
    app, raw, _ = app_of({"a": [stream]})
    reply = await chat(app, stream=True)
    assert reply.status == 200 and reply.complete and reply.events()[-1] == b"[DONE]"
    [line] = lines_of(raw)
    assert (line["outcome"], line["tried"]) == ("ok", ["a:ok"])
    assert metric(app, "gatewayz_upstream_attempts_total", provider="a", result="ok") == 1


async def test_a_stream_cut_after_commit_ends_with_an_error_event_and_counts_against_its_offer() -> None:
    app, raw, _ = app_of({"a": [Answer.stream(chunk("Hel"), chunk("lo"))]})  # no finish, no [DONE]
    reply = await chat(app, stream=True)
    assert reply.status == 200 and b"[DONE]" not in reply.body
    assert json.loads(reply.events()[-1])["error"]["code"] == "stream_broken"
    [line] = lines_of(raw)
    assert (line["status"], line["outcome"], line["tried"]) == (200, "stream_broken", ["a:stream_broken"])
    assert metric(app, "gatewayz_upstream_attempts_total", provider="a", result="stream_broken") == 1
    assert app.gateway.state.offers[("a", "a/gpt-4")].counts.errors == 1


async def test_a_client_that_leaves_mid_stream_is_a_499_and_no_failure_of_the_provider() -> None:
    app, raw, fake = app_of({"a": [Answer.stream(chunk("Hel"), stall=True)]})
    left = asyncio.Event()
    reply = Reply()
    task = asyncio.ensure_future(request(app, "POST", "/v1/chat/completions", {**HELLO, "stream": True},
                                         disconnect=left, reply=reply))  # fmt: skip
    while reply.status == 0:
        await asyncio.sleep(0.01)
    left.set()
    await asyncio.wait_for(task, 5)
    [line] = lines_of(raw)
    assert (line["status"], line["outcome"]) == (499, "client_disconnected")
    assert fake.responses[0].closed
    assert app.gateway.state.offers[("a", "a/gpt-4")].counts.errors == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_a_shutdown_ends_the_answer_the_client_can_read(stream: bool) -> None:
    first = [chunk("Hel")] if stream else []
    app, raw, _ = app_of({"a": [Answer.stream(*first, stall=True) if stream else Answer(delay_s=30)]})
    reply = Reply()
    task = asyncio.ensure_future(request(app, "POST", "/v1/chat/completions", {**HELLO, "stream": stream}, reply=reply))
    await asyncio.sleep(0.1)
    task.cancel()  # what uvicorn does shutdown_grace_s after SIGTERM
    await asyncio.wait_for(task, 5)
    [line] = lines_of(raw)
    assert line["outcome"] == "proxy_shutdown"
    if stream:
        assert reply.status == 200 and json.loads(reply.events()[-1])["error"]["code"] == "proxy_shutdown"
    else:
        assert reply.status == 503 and reply.json()["error"]["code"] == "proxy_shutdown"
    assert reply.complete


async def test_a_stored_responses_follow_ups_go_through_the_attempt_path() -> None:
    created = {"id": "resp_1", "object": "response", "status": "completed", "output": [
        {"type": "message", "content": [{"type": "output_text", "text": "hi"}]}]}  # fmt: skip
    app, raw, fake = app_of({"a": [Answer(body=created), Answer(body=created), Answer(body={"deleted": True}),
                                   Answer.error(404, "No response found")]})  # fmt: skip
    made = await request(app, "POST", "/v1/responses", {"model": "gpt-4", "input": "hi"})
    fetched = await request(app, "GET", "/v1/responses/resp_1?include=x")
    deleted = await request(app, "DELETE", "/v1/responses/resp_1")
    gone = await request(app, "GET", "/v1/responses/resp_1")
    assert (made.status, fetched.status, deleted.status) == (200, 200, 200)
    assert fetched.json()["id"] == "resp_1" and fetched.headers["x-gatewayz-provider"] == "a"
    assert [(s.method, s.url) for s in fake.sent[1:]] == [
        ("GET", "http://a/v1/responses/resp_1?include=x"),
        ("DELETE", "http://a/v1/responses/resp_1"),
    ]
    assert (gone.status, gone.json()["error"]["code"]) == (404, "response_not_found")  # the pin was forgotten
    routes = [(line["route"], line["outcome"]) for line in lines_of(raw)]
    assert routes[1:] == [("/v1/responses/{response_id}", "ok")] * 2 + [("/v1/responses/{response_id}", "response_not_found")]
