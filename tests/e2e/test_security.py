"""Security: who gets in, where keys go, and what a request or a provider can make the proxy do.

Client keys and the admin token are checked in constant time; provider keys go to their own
provider only and appear in no answer, log line, metric, admin view or exception, even when a
provider echoes one back; a request cannot inject headers, choose the upstream host or path, or
get itself redirected; a provider's redirect is not followed and not passed on.
"""

from __future__ import annotations

import asyncio
import hmac
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from proxy.config import config_from_mapping
from proxy.errors import ConfigError
from proxy.mock.background import BackgroundServer
from proxy.mock.testing import refused_url
from tests.harness import CapturedLogs, ProxyServer, gateway_config

KEYS = {
    "A_API_KEY": "sk-live-aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "B_API_KEY": "sk-live-bbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    "C_API_KEY": "sk-live-cccccccccccccccccccccccccccc",
    "ECHO_API_KEY": "sk-live-eeeeeeeeeeeeeeeeeeeeeeeeeeee",
}
CLIENT_KEY = "client-key-0123456789abcdef"
ADMIN_TOKEN = "admin-token-fedcba9876543210"
CHAT = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}
SENT_UPSTREAM = {"host", "content-type", "content-length", "authorization", "accept", "accept-encoding",
                 "user-agent", "http-referer", "x-title", "openai-beta", "x-request-id"}


class EchoProvider:
    """A provider that misbehaves on purpose, chosen by the model it is asked for: it echoes the
    Authorization it got in a 400 or 401 body and in a header, or redirects elsewhere (307)."""

    def __init__(self, redirect_to: str = "http://127.0.0.1:9/") -> None:
        self.redirect_to = redirect_to
        self.seen: list[dict[str, Any]] = []
        self.server = BackgroundServer(self)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        payload = orjson.loads(body) if body else {}
        self.seen.append({"path": scope["path"], "headers": headers, "body": payload})
        auth = headers.get("authorization", "")
        model = payload.get("model", "")
        if model.endswith("redirect"):
            status, extra, out = 307, [(b"location", self.redirect_to.encode())], b'{"moved": true}'
        else:
            status = 401 if model.endswith("unauthorized") else 400
            out = orjson.dumps({"error": {"message": f"invalid request with key {auth}", "type": "invalid_request_error"}})
            extra = [(b"x-echo-authorization", auth.encode("latin-1"))]
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode()), *extra]})
        await send({"type": "http.response.body", "body": out})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/v1"


@pytest.fixture
def echo() -> Iterator[Callable[..., EchoProvider]]:
    made: list[EchoProvider] = []

    def make(**kw: Any) -> EchoProvider:
        provider = EchoProvider(**kw)
        provider.server.start()
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.server.stop()


def post(proxy: ProxyServer, body: Any = CHAT, **kw: Any) -> httpx.Response:
    return httpx.post(f"{proxy.url}/chat/completions", json=body, timeout=10, **kw)


# --- who gets in -------------------------------------------------------------------------------------


def test_client_keys_are_compared_in_constant_time(mock_provider: Any, proxy_server: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    mock = mock_provider("a")
    env = {"FAILOVER_API_KEYS": f"{CLIENT_KEY},other-client-key-9999", "FAILOVER_ADMIN_TOKEN": ADMIN_TOKEN}
    proxy = proxy_server(gateway_config([("a", mock.url)], env=env))
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    refused = {
        "no header": {},
        "empty bearer": {"authorization": "Bearer"},
        "wrong key, same length": {"authorization": "Bearer " + "x" * len(CLIENT_KEY)},
        "a prefix of the key": {"authorization": f"Bearer {CLIENT_KEY[:-1]}"},
        "the key and more": {"authorization": f"Bearer {CLIENT_KEY}x"},
        "another scheme": {"authorization": f"Basic {CLIENT_KEY}"},
        "no scheme": {"authorization": CLIENT_KEY},
        "the admin token": {"authorization": f"Bearer {ADMIN_TOKEN}"},
        "two keys at once": {"authorization": f"Bearer {CLIENT_KEY},other-client-key-9999"},
        "latin-1 bytes": {"authorization": b"Bearer \xe9\xff" + CLIENT_KEY.encode()},
        "a huge header": {"authorization": "Bearer " + "k" * 30_000},
    }
    for name, headers in refused.items():
        response = post(proxy, headers=headers)
        assert response.status_code == 401, name
        assert response.json()["error"]["code"] == "invalid_api_key", name
        assert CLIENT_KEY not in response.text
    for given in (f"Bearer {CLIENT_KEY}", f"bearer {CLIENT_KEY}", f"Bearer   {CLIENT_KEY}", "Bearer other-client-key-9999"):
        compared.clear()
        assert post(proxy, headers={"authorization": given}).status_code == 200, given
        assert len(compared) == 2, "every configured key is compared, even after one matched"
    assert mock.stats()["requests"] == 4


def test_admin_routes_want_exactly_the_admin_token(mock_provider: Any, proxy_server: Any) -> None:
    mock = mock_provider("a")
    env = {"FAILOVER_API_KEYS": CLIENT_KEY, "FAILOVER_ADMIN_TOKEN": ADMIN_TOKEN}
    proxy = proxy_server(gateway_config([("a", mock.url)], env=env))
    refused: list[dict[str, str]] = [
        {}, {"authorization": f"Bearer {CLIENT_KEY}"}, {"authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
        {"authorization": f"Bearer {ADMIN_TOKEN}0"}, {"authorization": f"Basic {ADMIN_TOKEN}"},
        {"authorization": ADMIN_TOKEN}, {"x-admin-token": ADMIN_TOKEN}, {"cookie": f"token={ADMIN_TOKEN}"},
    ]
    for path in ("/admin/failover/status", "/admin/failover/model/gpt-4", "/admin/providers"):
        for headers in refused:
            response = httpx.get(f"{proxy.base}{path}", headers=headers)
            assert response.status_code == 401, (path, headers)
            assert ADMIN_TOKEN not in response.text
        assert httpx.get(f"{proxy.base}{path}?token={ADMIN_TOKEN}").status_code == 401
        assert httpx.get(f"{proxy.base}{path}", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
    assert httpx.get(f"{proxy.base}/admin/providers/../providers").status_code in (401, 404)


# --- where provider keys go --------------------------------------------------------------------------


def test_each_key_goes_only_to_its_own_provider(mock_provider: Any, proxy_server: Any) -> None:
    """Under concurrency, failover, streams and preferences, a mock that got another provider's key
    would answer 401; each keeps a history of every request it saw."""
    mocks = {s: mock_provider(s, api_key=KEYS[f"{s.upper()}_API_KEY"], history=1000, fault="status", status=500,
                              fail_rate=0.4, seed=i) for i, s in enumerate("abc")}
    keyless = mock_provider("d", history=1000)
    providers = [(s, m.url) for s, m in mocks.items()] + [("d", keyless.url)]
    proxy = proxy_server(gateway_config(providers, env={k: v for k, v in KEYS.items() if k != "ECHO_API_KEY"},
                                        proxy={"circuit_failure_threshold": 1000, "max_attempts": 4}))
    sdk = openai.AsyncOpenAI(base_url=proxy.url, api_key="client-side-key-never-forwarded", max_retries=0)

    async def one(i: int) -> None:
        order = ["a", "b", "c", "d"][i % 4:] + ["a", "b", "c", "d"][: i % 4]
        extra = {"provider": {"order": order}}
        if i % 3 == 0:
            stream = await sdk.chat.completions.create(model="gpt-4", messages=CHAT["messages"], stream=True,
                                                       extra_body=extra)
            async for _ in stream:
                pass
        else:
            await sdk.chat.completions.create(model="gpt-4", messages=CHAT["messages"], extra_body=extra)

    async def run() -> None:
        await asyncio.gather(*(one(i) for i in range(120)))
        await sdk.close()

    asyncio.run(run())
    for slug, mock in mocks.items():
        seen = mock.stats()["recent"]
        assert seen, slug
        assert {r["headers"].get("authorization") for r in seen} == {f"Bearer {KEYS[f'{slug.upper()}_API_KEY']}"}
    for request in keyless.stats()["recent"]:
        assert "authorization" not in request["headers"], "a provider without a key gets no key at all"
    metrics = httpx.get(f"{proxy.base}/metrics").text
    assert 'result="401"' not in metrics, "no provider ever saw a key that was not its own"


def test_client_headers_that_are_not_for_providers_stay_here(mock_provider: Any, proxy_server: Any) -> None:
    mock = mock_provider("a")
    proxy = proxy_server(gateway_config([("a", mock.url)], env={"A_API_KEY": KEYS["A_API_KEY"]}))
    sent = {
        "cookie": "session=1", "x-api-key": "client-x", "api-key": "client-azure", "proxy-authorization": "Basic p",
        "openai-organization": "org-client", "x-forwarded-for": "10.9.9.9", "x-forwarded-host": "evil.example",
        "forwarded": "host=evil.example", "x-gatewayz-provider": "a", "authorization": "Bearer client-own-key",
        "user-agent": "sdk/1", "x-title": "my app",
    }
    response = post(proxy, headers=sent)
    assert response.status_code == 200
    seen = mock.stats()["recent"][-1]["headers"]
    assert set(seen) <= SENT_UPSTREAM, set(seen) - SENT_UPSTREAM
    assert seen["authorization"] == f"Bearer {KEYS['A_API_KEY']}"
    assert seen["host"] == f"127.0.0.1:{mock.port}"
    assert seen["user-agent"] == "sdk/1" and seen["x-title"] == "my app"


def test_a_provider_echoing_our_key_does_not_leak_it(mock_provider: Any, proxy_server: Any, echo: Any) -> None:
    """A 400 is passed through to the client, but not the key the provider echoed in it; a 401 that
    echoes it is failed over and its body never shown. Every output is searched for every key."""
    echoing = echo()
    b = mock_provider("b", api_key=KEYS["B_API_KEY"])
    providers = [("echo", echoing.url), ("b", b.url), ("c", refused_url())]
    models = {"gpt-4": ["echo", "b"], "bad": ["echo"], "unauthorized": ["echo", "c", "b"], "dead": ["c"]}
    env = {**KEYS, "FAILOVER_ADMIN_TOKEN": ADMIN_TOKEN}
    proxy = proxy_server(gateway_config(providers, models, env=env, proxy={"circuit_failure_threshold": 1000}))
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    outputs: list[str] = []
    with CapturedLogs().installed() as logs:
        passed = post(proxy, {**CHAT, "model": "bad"})
        assert passed.status_code == 400
        assert "invalid request with key Bearer [redacted]" in passed.json()["error"]["message"]
        assert passed.headers["x-echo-authorization"] == "Bearer [redacted]"
        failed_over = post(proxy, {**CHAT, "model": "unauthorized"})
        assert failed_over.status_code == 200 and failed_over.headers["x-gatewayz-provider"] == "b"
        streamed = post(proxy, {**CHAT, "model": "unauthorized", "stream": True})
        assert streamed.status_code == 200
        dead = post(proxy, {**CHAT, "model": "dead"})
        assert dead.status_code == 503
        outputs += [r.text + str(r.headers) for r in (passed, failed_over, streamed, dead)]
        outputs.append(httpx.get(f"{proxy.base}/metrics").text)
        for path in ("/admin/failover/status", "/admin/failover/model/unauthorized", "/admin/providers", "/readyz"):
            outputs.append(httpx.get(proxy.base + path, headers=admin).text)
        outputs += [repr(proxy.config), repr(proxy.gateway.live.current), str(proxy.config.providers)]
    outputs += logs.lines
    everything = "\n".join(outputs)
    assert echoing.seen, "the echoing provider was asked"
    for name, key in KEYS.items():
        assert key not in everything, f"{name} leaked"


def test_a_key_with_a_newline_is_trimmed_or_refused_at_start_up(mock_provider: Any, proxy_server: Any) -> None:
    """`KEY=$(cat file)` keeps no newline, but env files and secret mounts often do: the key is sent
    without it, instead of every request to that provider failing. A control character inside a
    key is a start-up error that names the variable, never the value."""
    a, b = mock_provider("a", api_key=KEYS["A_API_KEY"]), mock_provider("b")
    proxy = proxy_server(gateway_config([("a", a.url), ("b", b.url)], env={"A_API_KEY": KEYS["A_API_KEY"] + "\n"}))
    response = post(proxy)
    assert response.status_code == 200 and response.headers["x-gatewayz-provider"] == "a"
    with pytest.raises(ConfigError) as info:
        gateway_config([("a", a.url)], env={"A_API_KEY": "sk-live-secret\r\nX-Injected: 1"})
    assert "providers[0].api_key_env" in str(info.value)
    assert "sk-live-secret" not in str(info.value)
    data = {"providers": [{"slug": "a", "name": "A", "base_url": a.url, "api_key_env": "A_API_KEY"}]}
    with pytest.raises(ConfigError):
        config_from_mapping(data, "(test)", {"A_API_KEY": "sk-\x00-nul"})


# --- what a request can make the proxy do ------------------------------------------------------------


def test_the_preference_header_cannot_inject_or_redirect(mock_provider: Any, proxy_server: Any) -> None:
    mocks = {s: mock_provider(s) for s in ("a", "b")}
    proxy = proxy_server(gateway_config([(s, m.url) for s, m in mocks.items()]))
    for value in ["a\tSet-Cookie: x=1", "a Location: http://evil.example/", "http://evil.example/v1", "//evil.example",
                  "é", "a" * 65, "a" * 10_000, "../a", "a/b", "a@evil.example", "a;b"]:
        response = post(proxy, headers={"x-gatewayz-provider": value.encode("latin-1", "replace")})
        assert response.status_code == 400, value
        assert response.json()["error"]["param"] == "x-gatewayz-provider"
        assert "set-cookie" not in response.headers and "location" not in response.headers
        assert value not in response.text
    # CR LF cannot live inside a header: on the wire it starts a new (request) header, which goes nowhere
    payload = orjson.dumps(CHAT)
    raw = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           b"x-gatewayz-provider: b\r\nSet-Cookie: stolen=1\r\nLocation: http://evil.example/\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(raw)
        answer = b""
        while more := sock.recv(65536):
            answer += more
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 200")
    assert b"x-gatewayz-provider: b\r\n" in head + b"\r\n"
    assert b"set-cookie" not in head and b"location" not in head and b"stolen" not in head
    assert "set-cookie" not in mocks["b"].stats()["recent"][-1]["headers"]


@pytest.mark.parametrize("field", [
    {"order": ["a\r\nLocation: http://evil.example/"]}, {"order": ["http://evil.example/v1"]}, {"only": ["../../a"]},
    {"ignore": ["a\n"]}, {"order": ["a" * 100_000]}, {"order": [{"slug": "a", "base_url": "http://evil.example"}]},
    {"base_url": "http://evil.example/v1", "order": "a"}, {"sort": "http://evil.example"},
])
def test_the_provider_field_cannot_inject_or_redirect(mock_provider: Any, proxy_server: Any, field: Any) -> None:
    mock = mock_provider("a")
    proxy = proxy_server(gateway_config([("a", mock.url)]))
    response = post(proxy, {**CHAT, "provider": field})
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "evil" not in response.text and "Location" not in response.text
    assert mock.stats()["requests"] == 0


def test_a_request_cannot_pick_the_upstream_host_or_path(mock_provider: Any, proxy_server: Any) -> None:
    evil = mock_provider("evil")
    good = mock_provider("a")
    proxy = proxy_server(gateway_config([("a", good.url)], {"gpt-4": ["a"], "llama-3": ["a"]}))
    evil_host = f"127.0.0.1:{evil.port}"
    models = [
        f"http://{evil_host}/v1", f"http://{evil_host}/v1/gpt-4", f"//{evil_host}/gpt-4", f"gpt-4@{evil_host}",
        f"a@{evil_host}/gpt-4", "../../gpt-4", "a/../../../gpt-4", "gpt-4/../../v1/embeddings", "gpt-4?x=1",
        "gpt-4#frag", "gpt-4%2F..%2F..", "gpt-4\r\nHost: evil", "gpt-4 HTTP/1.1\r\n", "\u202egpt-4", "llama-3",
    ]
    for model in models:
        response = post(proxy, {**CHAT, "model": model}, headers={"host": evil_host, "x-forwarded-host": evil_host})
        assert response.status_code in (200, 404), (model, response.status_code)
    payload = orjson.dumps(CHAT)
    for target in (f"http://{evil_host}/v1/chat/completions".encode(), b"/v1/chat/completions/../../evil",
                   b"//" + evil_host.encode() + b"/v1/chat/completions"):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(b"POST %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                         % (target, evil_host.encode(), len(payload), payload))
            while sock.recv(65536):
                pass
    assert evil.stats()["requests"] == 0, "no request reached the host the client named"
    seen = good.stats()
    assert set(seen["paths"]) == {"/v1/chat/completions"}
    assert {r["body"]["model"] for r in seen["recent"]} <= {"a/gpt-4", "a/llama-3"}
    assert all(r["query"] == "" for r in seen["recent"])


def test_a_providers_redirect_is_not_followed_nor_passed_on(mock_provider: Any, proxy_server: Any, echo: Any) -> None:
    evil = mock_provider("evil")
    redirecting = echo(redirect_to=f"{evil.url}/chat/completions")
    b = mock_provider("b")
    models = {"redirect": ["echo", "b"], "only-redirect": ["echo"]}
    proxy = proxy_server(gateway_config([("echo", redirecting.url), ("b", b.url)], models, env=KEYS))
    failed_over = post(proxy, {**CHAT, "model": "redirect"}, headers={"x-gatewayz-provider": "echo"})
    assert failed_over.status_code == 200
    assert failed_over.headers["x-gatewayz-provider"] == "b"
    assert failed_over.headers["x-gatewayz-attempts"] == "2"
    alone = post(proxy, {**CHAT, "model": "only-redirect"})
    assert alone.status_code == 503
    assert alone.json()["error"]["attempts"][0]["status"] == "307"
    for response in (failed_over, alone):
        assert "location" not in response.headers
        assert evil.url not in response.text
    assert evil.stats()["requests"] == 0, "the redirect was not followed"
    assert redirecting.seen and all(r["headers"]["authorization"] == f"Bearer {KEYS['ECHO_API_KEY']}"
                                    for r in redirecting.seen)
