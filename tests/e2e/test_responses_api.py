"""POST /v1/responses through the proxy with the official SDK (sync and async): failover before
output, typed stream events in order, usage and cost, and stateful chains pinned to the provider
that created the response, across two proxy instances sharing Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from proxy.mock.background import BackgroundServer
from tests.harness import gateway_config

FIRST = {"x-gatewayz-provider": "flaky"}
PRICES = {"flaky": (0.001, 0.002), "steady": (0.001, 0.002)}


OPENED: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()


def client(proxy: Any, headers: dict[str, str] | None = None) -> openai.OpenAI:
    sdk = openai.OpenAI(base_url=proxy.url, api_key="unused", default_headers=headers or FIRST, max_retries=0)
    OPENED.append(sdk)
    return sdk


@pytest.fixture
def pair(mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]) -> tuple[Any, Any, Any]:
    flaky = mock_provider("flaky", fault="rate_limit", retry_after="0")
    steady = mock_provider("steady")
    config = gateway_config([("flaky", flaky.url), ("steady", steady.url)], prices=PRICES)
    return proxy_server(config), flaky, steady


def test_create_fails_over_and_counts_usage_and_cost(pair: tuple[Any, Any, Any]) -> None:
    proxy, flaky, _ = pair
    answer = client(proxy).responses.with_raw_response.create(model="gpt-4", input="say hi")
    response = answer.parse()
    assert response.output_text == "steady#1 steady#2 steady#3 steady#4 steady#5 "
    assert answer.headers["x-gatewayz-provider"] == "steady" and answer.headers["x-gatewayz-attempts"] == "2"
    assert flaky.stats()["paths"]["/v1/responses"] == 1
    assert proxy.metric("gatewayz_tokens_total", provider="steady", model="gpt-4", kind="completion") == 5
    assert proxy.metric("gatewayz_cost_usd_total", provider="steady") == pytest.approx(2 * 0.001 + 5 * 0.002)


async def test_stream_typed_events_arrive_in_order_after_a_failover(pair: tuple[Any, Any, Any]) -> None:
    proxy, _, _ = pair
    async with openai.AsyncOpenAI(base_url=proxy.url, api_key="u", default_headers=FIRST, max_retries=0) as sdk:
        stream = await sdk.responses.create(model="gpt-4", input="say hi", stream=True)
        events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"
    ]  # fmt: skip
    assert kinds[-4:] == [
        "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"
    ]  # fmt: skip
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "steady#1 steady#2 steady#3 steady#4 steady#5 "
    assert events[-1].response.usage is not None
    assert proxy.metric("gatewayz_tokens_total", provider="steady", model="gpt-4", kind="completion") == 5


def test_tools_and_structured_output_are_honoured(pair: tuple[Any, Any, Any]) -> None:
    proxy, _, _ = pair
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    called = client(proxy).responses.create(model="gpt-4", input="weather?", tools=[tool])  # type: ignore[list-item]
    assert called.output[0].type == "function_call" and called.output[0].name == "get_weather"
    shaped = client(proxy).responses.create(model="gpt-4", input="json", text={"format": {"type": "json_object"}})
    assert orjson.loads(shaped.output_text) == {"mock": "steady"}


def scripted(events: list[tuple[str, dict[str, Any]]]) -> Any:
    """An upstream whose every /v1/responses answer is this stream of typed events."""
    body = b"".join(f"event: {k}\ndata: ".encode() + orjson.dumps({"type": k, **d}) + b"\n\n" for k, d in events)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.fixture
def upstream() -> Iterator[Callable[[Any], str]]:
    servers: list[BackgroundServer] = []

    def serve(app: Any) -> str:
        server = BackgroundServer(app)
        server.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}/v1"

    yield serve
    for server in servers:
        server.stop()


CREATED = ("response.created", {"sequence_number": 0, "response": {"id": "resp_bad", "status": "in_progress"}})
FAILED = ("response.failed", {"sequence_number": 2, "response": {"id": "resp_bad", "status": "failed",
                                                                  "error": {"code": "server_error", "message": "x"}}})  # fmt: skip


@pytest.mark.parametrize(
    "before_output",
    [
        [CREATED, FAILED],
        [CREATED, ("error", {"sequence_number": 1, "code": "rate_limit_exceeded", "message": "slow down"})],
    ],
)
def test_a_failure_event_before_any_output_fails_over(
    before_output: list[tuple[str, dict[str, Any]]],
    upstream: Callable[[Any], str],
    mock_provider: Callable[..., Any],
    proxy_server: Callable[..., Any],
) -> None:
    steady = mock_provider("steady")
    proxy = proxy_server(gateway_config([("flaky", upstream(scripted(before_output))), ("steady", steady.url)]))
    with client(proxy).responses.with_streaming_response.create(model="gpt-4", input="hi", stream=True) as answer:
        assert answer.headers["x-gatewayz-provider"] == "steady"
        assert answer.headers["x-gatewayz-attempts"] == "2"
        lines = [line for line in answer.iter_lines() if line.startswith("event:")]
    assert lines[0] == "event: response.created" and lines[-1] == "event: response.completed"
    assert "response.failed" not in "".join(lines)
    assert proxy.metric("gatewayz_failovers_total", from_provider="flaky", reason="error_in_answer") == 1


def test_a_failure_after_output_is_relayed_and_counted(
    upstream: Callable[[Any], str], mock_provider: Callable[..., Any], proxy_server: Callable[..., Any]
) -> None:
    delta = ("response.output_text.delta", {"sequence_number": 1, "item_id": "m", "output_index": 0,
                                            "content_index": 0, "delta": "Hel"})  # fmt: skip
    steady = mock_provider("steady")
    proxy = proxy_server(
        gateway_config([("flaky", upstream(scripted([CREATED, delta, FAILED]))), ("steady", steady.url)])
    )
    events = list(client(proxy).responses.create(model="gpt-4", input="hi", stream=True))
    assert [e.type for e in events] == ["response.created", "response.output_text.delta", "response.failed"]
    assert steady.stats()["requests"] == 0
    assert proxy.metric("gatewayz_requests_total", route="/v1/responses", outcome="stream_error") == 1


@pytest.fixture
def shared(
    mock_provider: Callable[..., Any], proxy_server: Callable[..., Any], redis_server_url: str, redis_prefix: str
) -> tuple[Any, Any, Any, Any]:
    """Two proxy instances sharing Redis, over `flaky` (429 until reset) and `steady`."""
    flaky = mock_provider("flaky", fault="status", status=500)
    steady = mock_provider("steady")
    env = {"REDIS_URL": redis_server_url, "FAILOVER_REDIS_PREFIX": redis_prefix}
    config = gateway_config([("flaky", flaky.url), ("steady", steady.url)], env=env)
    return proxy_server(config), proxy_server(config), flaky, steady


def test_a_follow_up_reaches_the_creating_provider_through_another_instance(shared: tuple[Any, Any, Any, Any]) -> None:
    first, second, flaky, steady = shared
    created = client(first).responses.create(model="gpt-4", input="remember 7")
    flaky.reset_stats()
    flaky.set_faults(fault="none")  # flaky is healthy now and still preferred: a free request would go there
    answer = client(second).responses.with_raw_response.create(
        model="gpt-4", input="what number?", previous_response_id=created.id
    )
    assert answer.headers["x-gatewayz-provider"] == "steady"
    assert answer.parse().previous_response_id == created.id
    assert flaky.stats()["requests"] == 0
    assert client(second).responses.create(model="gpt-4", input="free").id.startswith("resp_flaky_")


async def test_retrieve_cancel_input_items_and_delete_go_to_the_creating_provider(
    shared: tuple[Any, Any, Any, Any],
) -> None:
    first, second, flaky, steady = shared
    created = client(first).responses.create(model="gpt-4", input="keep me")
    flaky.set_faults(fault="none")
    flaky.reset_stats()
    async with openai.AsyncOpenAI(base_url=second.url, api_key="u", default_headers=FIRST, max_retries=0) as sdk:
        fetched = await sdk.responses.retrieve(created.id)
        items = await sdk.responses.input_items.list(created.id)
        cancelled = await sdk.responses.cancel(created.id)
        await sdk.responses.delete(created.id)
        with pytest.raises(openai.NotFoundError) as gone:
            await sdk.responses.retrieve(created.id)
    assert fetched.id == created.id and fetched.output_text == created.output_text
    assert [i.content[0].text for i in items.data] == ["keep me"]  # type: ignore[union-attr]
    assert cancelled.status == "cancelled"
    assert "not found" in gone.value.message.lower()
    assert flaky.stats()["requests"] == 0
    assert [r["method"] for r in steady.stats()["recent"][-4:]] == ["GET", "GET", "POST", "DELETE"]
    route = "/v1/responses/{response_id}"
    assert second.metric("gatewayz_requests_total", route=route, model="gpt-4", outcome="ok") == 4


def test_the_pinned_provider_down_is_a_503_that_names_it(shared: tuple[Any, Any, Any, Any]) -> None:
    first, second, flaky, steady = shared
    created = client(first).responses.create(model="gpt-4", input="remember 7")
    flaky.set_faults(fault="none")
    flaky.reset_stats()
    steady.set_faults(fault="status", status=503)
    with pytest.raises(openai.APIStatusError) as caught:
        client(second).responses.create(model="gpt-4", input="again", previous_response_id=created.id)
    assert caught.value.status_code == 503
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "pinned_provider_unavailable"
    assert "'steady'" in error["message"] and created.id in error["message"]
    assert flaky.stats()["requests"] == 0
    fetched = httpx.get(f"{second.url}/responses/{created.id}")
    assert fetched.status_code == 503 and "'steady'" in fetched.json()["error"]["message"]


def test_an_unknown_previous_response_is_a_404(pair: tuple[Any, Any, Any]) -> None:
    proxy, flaky, steady = pair
    with pytest.raises(openai.NotFoundError) as caught:
        client(proxy).responses.create(model="gpt-4", input="x", previous_response_id="resp_never_made")
    assert caught.value.code == "response_not_found"
    assert httpx.delete(f"{proxy.url}/responses/resp_never_made").status_code == 404
    assert flaky.stats()["requests"] == steady.stats()["requests"] == 0


def test_a_pinned_provider_that_rate_limits_is_left_alone_until_its_retry_after(
    shared: tuple[Any, Any, Any, Any],
) -> None:
    first, _, flaky, steady = shared
    created = client(first).responses.create(model="gpt-4", input="remember 7")
    steady.set_faults(fault="rate_limit", retry_after="30")
    steady.reset_stats()
    for reason in ("429", "cooling down"):
        with pytest.raises(openai.APIStatusError) as caught:
            client(first).responses.create(model="gpt-4", input="again", previous_response_id=created.id)
        assert caught.value.status_code == 503 and int(caught.value.response.headers["retry-after"]) >= 29
        assert f"'steady', which cannot serve this follow-up now ({reason})" in caught.value.message
    assert steady.stats()["requests"] == 1


def test_a_pinned_provider_that_fails_a_retrieve_is_cooled_down_and_counted(
    shared: tuple[Any, Any, Any, Any],
) -> None:
    first, _, flaky, steady = shared
    created = client(first).responses.create(model="gpt-4", input="remember 7")
    steady.set_faults(fault="rate_limit", retry_after="30")
    steady.reset_stats()
    flaky.reset_stats()
    for reason in ("429", "cooling down"):  # the second GET is not even sent: the provider asked for 30 s
        fetched = httpx.get(f"{first.url}/responses/{created.id}")
        assert fetched.status_code == 503 and int(fetched.headers["retry-after"]) >= 29
        assert f"'steady', which cannot serve this follow-up now ({reason})" in fetched.json()["error"]["message"]
    assert steady.stats()["requests"] == 1 and flaky.stats()["requests"] == 0
    assert first.metric("gatewayz_upstream_attempts_total", provider="steady", result="429") == 1
    route = "/v1/responses/{response_id}"
    assert first.metric("gatewayz_requests_total", route=route, outcome="pinned_provider_unavailable") == 2
