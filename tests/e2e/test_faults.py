"""Faults under load: a provider dies, hangs, dribbles or lies, a proxy restarts, clients read slowly.

Every test drives the real proxy on a real socket against mock providers on loopback, counts every
request that did not get a complete, valid answer (`lost`), and asserts that the count is zero and
that no answer was a 500. Load is bounded in count and time and stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import selectors
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from proxy.mock.testing import MockProvider
from tests.harness import ProxyServer, gateway_config
from tests.load_helpers import CHAT, STREAM, Tally, complete_stream, load_client, request

PREFER_A = {"x-gatewayz-provider": "a"}  # every request tries the faulty provider first


def failovers_from(proxy: ProxyServer, provider: str) -> float:
    text = httpx.get(f"{proxy.base}/metrics").text
    prefix = "gatewayz_failovers_total{"
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix) and f'from_provider="{provider}"' in line
    )


def trio(
    mock_provider: Callable[..., MockProvider], proxy_server: Callable[..., ProxyServer], *,
    proxy: dict[str, Any] | None = None, a: dict[str, Any] | None = None, others: dict[str, Any] | None = None,
) -> tuple[dict[str, MockProvider], ProxyServer]:
    mocks = {"a": mock_provider("a", **(a or {}))}
    mocks |= {s: mock_provider(s, **(others or {})) for s in ("b", "c")}
    config = gateway_config([(s, m.url) for s, m in mocks.items()], proxy=proxy)
    return mocks, proxy_server(config)


# --- a provider dies in the middle of a thousand concurrent requests -------------------------------


@pytest.mark.slow
async def test_provider_killed_mid_run_loses_nothing(mock_provider: Any, proxy_server: Any) -> None:
    mocks, proxy = trio(mock_provider, proxy_server, a={"latency_ms": 20}, others={"latency_ms": 5},
                        proxy={"circuit_failure_threshold": 3, "circuit_cooldown_s": 60})
    tally = Tally()
    total, kill_after = 1000, 250
    killed = asyncio.Event()
    done = 0

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal done
        await request(client, proxy.url, CHAT, tally, headers=PREFER_A)
        done += 1
        if done == kill_after:
            killed.set()

    async def killer() -> int:
        await killed.wait()
        in_flight_at_kill = total - done
        await asyncio.to_thread(mocks["a"].stop)  # drops the connections a is answering on
        return in_flight_at_kill

    async with load_client(200) as client:
        results = await asyncio.gather(killer(), *(one(client) for _ in range(total)))
    tally.check(total)
    assert results[0] > 0, "the provider must die while requests are still running"
    assert tally.served["a"] >= kill_after // 2
    assert tally.served["b"] + tally.served["c"] > 0
    assert failovers_from(proxy, "a") > 0


@pytest.mark.slow
async def test_provider_killed_mid_stream_never_truncates_silently(mock_provider: Any, proxy_server: Any) -> None:
    """Streams committed by the dying provider end with an error event; every other stream completes."""
    mocks, proxy = trio(mock_provider, proxy_server, a={"chunks": 20, "chunk_interval_ms": 50})
    tally = Tally()
    broken_by_kill: list[str] = []
    started_after_kill = Tally()

    async def stream(client: httpx.AsyncClient) -> None:
        async with client.stream("POST", f"{proxy.url}/chat/completions", json=STREAM, headers=PREFER_A) as resp:
            text = (await resp.aread()).decode()
        tally.statuses[resp.status_code] += 1
        problem = complete_stream(text) if resp.status_code == 200 else text[:200]
        if problem is None:
            tally.served[resp.headers["x-gatewayz-provider"]] += 1
        elif resp.headers.get("x-gatewayz-provider") == "a" and problem.startswith("ended with an error event"):
            broken_by_kill.append(problem)  # committed before the kill: the client is told, not fooled
        else:
            tally.lost.append(problem)

    async with load_client(100) as client:
        first = [asyncio.ensure_future(stream(client)) for _ in range(100)]
        await asyncio.to_thread(mocks["a"].wait_for_requests, 50, 10.0)  # a is streaming (1 s each)
        await asyncio.sleep(0.1)
        await asyncio.to_thread(mocks["a"].stop)
        after = [request(client, proxy.url, STREAM, started_after_kill, headers=PREFER_A) for _ in range(100)]
        await asyncio.gather(*first, *after)
    assert tally.lost == [] and not [s for s in tally.statuses if s >= 500]
    assert tally.ok + len(broken_by_kill) == 100
    assert broken_by_kill, "some streams were mid-way on the killed provider"
    started_after_kill.check(100)
    assert started_after_kill.served["a"] == 0


# --- a provider that hangs, one that dribbles, one that lies -----------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_provider_that_hangs_forever_is_failed_over_in_time(
    mock_provider: Any, proxy_server: Any, stream: bool
) -> None:
    hang = {"fault": "slow_first_byte", "first_byte_ms": 600_000} if stream else {"fault": "stall"}
    mocks, proxy = trio(mock_provider, proxy_server, a=hang,
                        proxy={"first_byte_timeout_s": 0.3, "circuit_failure_threshold": 3, "circuit_cooldown_s": 0.5})
    tally = Tally()
    latencies: list[float] = []

    async def timed(client: httpx.AsyncClient) -> None:
        started = time.perf_counter()
        await request(client, proxy.url, {**CHAT, "stream": stream}, tally, headers=PREFER_A)
        latencies.append(time.perf_counter() - started)

    async with load_client(50) as client:
        for _ in range(4):  # four waves, so half-open trials of the hung provider happen mid-run
            await asyncio.gather(*(timed(client) for _ in range(50)))
            await asyncio.sleep(0.2)
    tally.check(200)
    assert tally.served["a"] == 0
    # one first-byte timeout, then the next offer: seconds at most on a loaded machine, never the 600 s hang
    assert max(latencies) < 0.3 + 4.0
    hung = mocks["a"].stats()["requests"]
    assert 3 <= hung < 200, "the open circuit spares most requests the wait"
    mocks["a"].wait_for_disconnects(hung, timeout=3.0)  # every hung upstream request was abandoned


@pytest.mark.slow
async def test_provider_slow_on_every_chunk_streams_everything(mock_provider: Any, proxy_server: Any) -> None:
    mocks, proxy = trio(mock_provider, proxy_server, a={"chunks": 10, "chunk_interval_ms": 100},
                        proxy={"stream_idle_timeout_s": 1.0})
    tally = Tally()
    started = time.perf_counter()
    async with load_client(60) as client:
        slow = [request(client, proxy.url, STREAM, tally, headers=PREFER_A) for _ in range(50)]
        quick = Tally()
        fast = [request(client, proxy.url, STREAM, quick, headers={"x-gatewayz-provider": "b"}) for _ in range(50)]
        await asyncio.gather(*slow, *fast)
    elapsed = time.perf_counter() - started
    tally.check(50)
    quick.check(50)
    assert tally.served["a"] == 50, "slow is not broken: nothing fails over once the stream is committed"
    assert elapsed < 5.0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("faults", "stream"),
    [
        ({"fault": "garbage"}, False),
        ({"fault": "garbage"}, True),
        ({"fault": "cut"}, False),
        ({"fault": "cut", "after_chunks": 0}, True),
    ],
    ids=["garbage-json", "garbage-sse", "truncated-json", "cut-before-first-event"],
)
async def test_malformed_answers_are_failed_over(
    mock_provider: Any, proxy_server: Any, faults: dict[str, Any], stream: bool
) -> None:
    mocks, proxy = trio(mock_provider, proxy_server, a={**faults, "fail_rate": 0.5},
                        proxy={"circuit_failure_threshold": 1000})
    tally = Tally()
    async with load_client(50) as client:
        await asyncio.gather(*(request(client, proxy.url, {**CHAT, "stream": stream}, tally, headers=PREFER_A)
                               for _ in range(200)))
    tally.check(200)
    stats = mocks["a"].stats()
    injected = sum(stats["faults_injected"].values())
    assert injected >= 10
    assert tally.served["a"] == stats["requests"] - injected, "every malformed answer was failed over"
    assert failovers_from(proxy, "a") == injected


# --- slow readers must not slow anyone else ----------------------------------------------------------


class SlowReaders:
    """`count` raw-socket clients with tiny receive buffers, each reading a long stream a few bytes at a time."""

    def __init__(self, port: int, count: int, body: bytes) -> None:
        self.port, self.count, self.body = port, count, body
        self.heads: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-readers", daemon=True)
        self._sockets: list[socket.socket] = []

    def __enter__(self) -> SlowReaders:
        request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(self.body), self.body)
        )
        for _ in range(self.count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
            sock.connect(("127.0.0.1", self.port))
            sock.sendall(request)
            sock.setblocking(False)
            self._sockets.append(sock)
        self._thread.start()
        return self

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        for sock in self._sockets:
            selector.register(sock, selectors.EVENT_READ)
        first: dict[int, bytes] = {}
        while not self._stop.is_set():
            for key, _ in selector.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(64)  # a few bytes per tick: the proxy's writes back up
                except BlockingIOError:
                    continue
                first.setdefault(sock.fileno(), data)
            time.sleep(0.1)
        self.heads = list(first.values())
        selector.close()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self._sockets:
            sock.close()


def fast_latencies(url: str, count: int = 40) -> list[float]:
    """Sequential non-streaming requests to provider a, the one serving the slow streams."""
    out = []
    with httpx.Client(timeout=10, headers=PREFER_A) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = client.post(f"{url}/chat/completions", json=CHAT)
            assert response.status_code == 200 and response.json()["choices"]
            out.append(time.perf_counter() - started)
    return out


def finished_requests(proxy: ProxyServer) -> float:
    text = httpx.get(f"{proxy.base}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("gatewayz_requests_total{") and "/v1/chat/completions" in line)


@pytest.mark.slow
def test_slow_stream_readers_do_not_slow_a_fast_client(mock_provider: Any, proxy_server: Any) -> None:
    slow = mock_provider("a", chunks=1000, chunk_interval_ms=5)  # five-second streams, 200 kB each
    quick = mock_provider("b")
    config = gateway_config([("a", slow.url), ("b", quick.url)], proxy={"stream_idle_timeout_s": 30})
    proxy = proxy_server(config)
    fast_latencies(proxy.url, 10)  # warm the pools
    baseline = statistics.median(fast_latencies(proxy.url))
    body = json.dumps({**STREAM, "provider": {"order": ["a"]}}).encode()
    with SlowReaders(proxy.port, 100, body) as readers:
        slow.wait_for_requests(10 + 40 + 100, timeout=10)  # every slow stream reached the provider
        time.sleep(1.0)  # their buffers fill and the proxy's sends to them block
        loaded = fast_latencies(proxy.url)
        streamed = Tally()
        asyncio.run(_one_stream(proxy.url, streamed))
    streamed.check(1)
    assert len(readers.heads) == 100 and all(h.startswith(b"HTTP/1.1 200") for h in readers.heads)
    median = statistics.median(loaded)
    assert median < max(5 * baseline, baseline + 0.15), f"fast client: {baseline * 1e3:.1f} ms -> {median * 1e3:.1f} ms"
    assert max(loaded) < 1.0
    # the slow clients left: every one of their requests ends (upstream cancelled), none is left hanging
    deadline = time.monotonic() + 5
    while finished_requests(proxy) < 10 + 40 + 100 + 40 + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert finished_requests(proxy) == 10 + 40 + 100 + 40 + 1


async def _one_stream(url: str, tally: Tally) -> None:
    async with load_client(1) as client:
        await request(client, url, STREAM, tally, headers={"x-gatewayz-provider": "b"})


# --- a proxy instance restarts while another keeps serving ------------------------------------------


@dataclass
class Fleet:
    """The client's view of the proxy instances: a request that cannot reach one goes to the next."""

    urls: list[str]
    by_instance: Counter[str] = field(default_factory=Counter)
    retried: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    async def send(self, client: httpx.AsyncClient, index: int) -> None:
        for hop in range(len(self.urls)):
            url = self.urls[(index + hop) % len(self.urls)]
            try:
                response = await client.post(f"{url}/chat/completions", json=CHAT)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                self.retried.append(f"{url}: {type(exc).__name__}")  # never reached the app: safe to resend
                continue
            except httpx.HTTPError as exc:
                self.lost.append(f"{url}: {type(exc).__name__}: {exc}")
                return
            self.statuses[response.status_code] += 1
            if response.status_code == 200:
                self.by_instance[url] += 1
            else:
                self.lost.append(f"{url}: {response.status_code} {response.text[:200]}")
            return
        self.lost.append("no instance reachable")


@pytest.mark.slow
async def test_proxy_restart_while_another_instance_serves(mock_provider: Any, proxy_server: Any) -> None:
    mocks = [mock_provider(s, latency_ms=30) for s in ("a", "b")]
    config = gateway_config([(m.name, m.url) for m in mocks])
    # a graceful stop lets in-flight requests finish: given room to, as serve's `shutdown_grace_s` does
    # (the harness's 2 s is tight for 40 clients and three servers sharing one loaded test process)
    first, survivor = proxy_server(config, grace_s=10), proxy_server(config, grace_s=10)
    fleet = Fleet([first.url, survivor.url])
    restarted: list[ProxyServer] = []

    async def restart() -> None:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(first.stop)  # graceful: in-flight requests finish, new ones are refused
        replacement = await asyncio.to_thread(proxy_server, config, grace_s=10)
        restarted.append(replacement)
        fleet.urls[0] = replacement.url

    async def traffic(client: httpx.AsyncClient, worker: int) -> None:
        deadline = time.monotonic() + 3.0
        index = worker
        while time.monotonic() < deadline:
            await fleet.send(client, index)
            index += 1

    async with load_client(40) as client:
        await asyncio.gather(restart(), *(traffic(client, w) for w in range(40)))
    assert fleet.lost == [] and not [s for s in fleet.statuses if s >= 500]
    served = sum(fleet.by_instance.values())
    assert fleet.by_instance[first.url] > 0 and fleet.by_instance[restarted[0].url] > 0
    assert fleet.by_instance[survivor.url] > served // 3
    assert not [r for r in fleet.retried if survivor.url in r], "the surviving instance never missed a request"
    seen_upstream = sum(m.stats()["requests"] for m in mocks)
    assert seen_upstream == served, "every request was served exactly once: none lost, none sent twice"


@pytest.fixture(autouse=True)
def _bounded() -> Iterator[None]:
    started = time.monotonic()
    yield
    assert time.monotonic() - started < 30, "a fault test must stay bounded"
