"""Bad input, client keys, preferences and the non-proxied routes, end to end over a real socket."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import openai
import pytest

from tests.harness import ProxyServer, gateway_config

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture
def trio(mock_provider: Any, proxy_server: Any) -> tuple[dict[str, Any], ProxyServer]:
    mocks = {s: mock_provider(s) for s in ("a", "b", "c")}
    prices = {"a": (3e-5, 6e-5), "b": (1e-6, 2e-6), "c": (1e-5, 1e-5)}
    config = gateway_config([(s, m.url) for s, m in mocks.items()], prices=prices, proxy={"max_body_bytes": 4096})
    return mocks, proxy_server(config)


def post(proxy: ProxyServer, body: Any = None, **kw: Any) -> httpx.Response:
    if body is not None:
        kw["json"] = body
    return httpx.post(f"{proxy.url}/chat/completions", timeout=10, **kw)


@pytest.mark.parametrize(
    ("content", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "must be a JSON object, not an array"),
        (b'"gpt-4"', 400, "must be a JSON object"),
        (b"{}", 400, "model"),
        (b'{"model": 4}', 400, "model must be a non-empty string"),
        (b'{"model": ""}', 400, "model must be a non-empty string"),
        (b'{"model": "gpt-4", "stream": "yes"}', 400, "stream must be true or false"),
        (b'{"model": "gpt-4", "provider": "a"}', 400, "provider must be an object"),
        (b'{"model": "gpt-4", "provider": {"order": "a"}}', 400, "provider.order"),
        (b'{"model": "gpt-4", "provider": {"sort": "vibes"}}', 400, "provider.sort"),
        (b'{"model": "gpt-5-turbo-ultra"}', 404, "does not exist"),
        (b"\xff\xfe{}", 400, "not valid JSON"),
    ],
)
def test_bad_input_gets_an_openai_shaped_error(trio: Any, content: bytes, status: int, fragment: str) -> None:
    _, proxy = trio
    response = post(proxy, content=content, headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert fragment in error["message"]
    assert {"message", "type", "code"} <= set(error)
    assert "Traceback" not in response.text


def test_unknown_model_is_404_model_not_found_for_the_sdk(trio: Any) -> None:
    _, proxy = trio
    sdk = openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        sdk.chat.completions.create(model="nope", messages=MESSAGES)  # type: ignore[arg-type]
    assert info.value.code == "model_not_found"


def test_a_provider_style_id_finds_its_canonical_model(trio: Any) -> None:
    _, proxy = trio
    assert post(proxy, {"model": "B/gpt-4", "messages": MESSAGES}).status_code == 200  # b's own id, any case
    assert post(proxy, {"model": "openai/gpt-4", "messages": MESSAGES}).status_code == 404  # no offer is listed so


def test_body_over_the_limit_is_413_by_content_length(trio: Any) -> None:
    mocks, proxy = trio
    response = post(proxy, {"model": "gpt-4", "messages": [{"role": "user", "content": "x" * 5000}]})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert all(m.stats()["requests"] == 0 for m in mocks.values())


def test_chunked_body_over_the_limit_is_refused_before_it_ends(trio: Any) -> None:
    _, proxy = trio
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 3000
        for _ in range(2):  # 6000 bytes: over the 4096 limit, and the body never ends
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"request_too_large" in answer


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it has sent a whole answer with a body."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) == 0:
        more = sock.recv(65536)
        if not more:
            break
        data += more
    return data


def test_absurd_content_length_is_refused(trio: Any) -> None:
    _, proxy = trio
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\n{")
        assert sock.recv(65536).startswith(b"HTTP/1.1 413")


def test_wrong_method_and_unknown_route_are_openai_shaped(trio: Any) -> None:
    _, proxy = trio
    wrong = httpx.get(f"{proxy.url}/chat/completions")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["message"]
    missing = httpx.post(f"{proxy.url}/assistants", json={})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_models_health_and_readiness(trio: Any) -> None:
    _, proxy = trio
    sdk = openai.OpenAI(base_url=proxy.url, api_key="k", max_retries=0)
    assert [m.id for m in sdk.models.list()] == ["gpt-4"]
    assert httpx.get(f"{proxy.base}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{proxy.base}/readyz")
    assert ready.status_code == 200
    assert ready.json()["catalog"]["models"] == 1
    assert ready.json()["database"] == "not_configured"


def header_provider(response: httpx.Response) -> str:
    return response.headers["x-gatewayz-provider"]


def test_preference_header_puts_that_provider_first(trio: Any) -> None:
    mocks, proxy = trio
    response = post(proxy, {"model": "gpt-4", "messages": MESSAGES}, headers={"x-gatewayz-provider": "c"})
    assert header_provider(response) == "c"
    assert mocks["c"].stats()["recent"][-1]["headers"].get("x-gatewayz-provider") is None


def test_preference_order_only_ignore_and_no_fallbacks(trio: Any) -> None:
    mocks, proxy = trio
    base = {"model": "gpt-4", "messages": MESSAGES}
    assert header_provider(post(proxy, {**base, "provider": {"order": ["b", "a"]}})) == "b"
    assert header_provider(post(proxy, {**base, "provider": {"only": ["c"]}})) == "c"
    assert header_provider(post(proxy, {**base, "provider": {"ignore": ["a", "b"]}})) == "c"
    mocks["b"].set_faults(fault="status", status=500)
    pinned = post(proxy, {**base, "provider": {"order": ["b"], "allow_fallbacks": False}})
    assert pinned.status_code == 503
    assert [t["provider"] for t in pinned.json()["error"]["attempts"]] == ["b"]
    fell_back = post(proxy, {**base, "provider": {"order": ["b"]}})
    assert header_provider(fell_back) in {"a", "c"}
    assert fell_back.headers["x-gatewayz-attempts"] == "2"
    nothing = post(proxy, {**base, "provider": {"only": ["nowhere"]}})
    assert nothing.status_code == 400
    assert nothing.json()["error"]["code"] == "unknown_provider"


def test_sort_price_picks_the_cheapest_and_the_field_is_not_forwarded(trio: Any) -> None:
    mocks, proxy = trio
    response = post(proxy, {"model": "gpt-4", "messages": MESSAGES, "provider": {"sort": "price"}})
    assert header_provider(response) == "b"
    assert "provider" not in mocks["b"].stats()["recent"][-1]["body"]


def test_bad_preference_header_is_400_and_not_echoed(trio: Any) -> None:
    _, proxy = trio
    response = post(proxy, {"model": "gpt-4"}, headers={"x-gatewayz-provider": "evil\tinjected"})
    assert response.status_code == 400
    assert "injected" not in response.text and "injected" not in str(response.headers)


def test_client_keys_are_checked_and_never_sent_upstream(mock_provider: Any, proxy_server: Any) -> None:
    mock = mock_provider("a")
    env = {"FAILOVER_API_KEYS": "client-one,client-two", "A_API_KEY": "sk-provider-a-0123456789"}
    proxy = proxy_server(gateway_config([("a", mock.url)], env=env))
    assert post(proxy, {"model": "gpt-4", "messages": MESSAGES}).status_code == 401
    wrong = post(proxy, {"model": "gpt-4"}, headers={"authorization": "Bearer client-three"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    sdk = openai.OpenAI(base_url=proxy.url, api_key="client-two", max_retries=0)
    assert sdk.chat.completions.create(model="gpt-4", messages=MESSAGES).choices  # type: ignore[arg-type]
    seen = mock.stats()["recent"][-1]["headers"]
    assert seen["authorization"] == "Bearer sk-provider-a-0123456789"
    assert "client-two" not in str(seen)
