"""Bad input: property tests of request parsing, and a fuzz run of the HTTP API over a real socket.

The promise: whatever a client sends, it gets an answer (or a closed connection) and never a 500,
never a traceback, and the proxy holds nothing without bound: not for a huge header, not for a
client that trickles its request a byte at a time, not across thousands of bad requests.
"""

from __future__ import annotations

import json
import logging
import random
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from proxy.errors import BadRequest
from proxy.failover.client_request import ClientRequest, parse_preferences, parse_request
from proxy.http.head_guard import GuardedHttpToolsProtocol
from proxy.types import Preferences
from tests.harness import ProxyServer, gateway_config

SLUG_ORACLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_BODY = 64 * 1024
ALLOWED = {200, 400, 401, 404, 405, 408, 413, 422, 431}

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False,
    allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8), inner, max_size=4), max_leaves=20)
slugs = st.from_regex(SLUG_ORACLE, fullmatch=True)
NO_DEADLINE = settings(deadline=None)  # a loaded CI machine is slow, not wrong


# --- parse_request and parse_preferences: pure properties ------------------------------------------


@NO_DEADLINE
@given(raw=st.binary(max_size=300), header=st.none() | st.text(max_size=70))
@example(raw=b'{"model": "m", "x": ' + b"[" * 300 + b"]" * 300 + b"}", header=None)
@example(raw=b'{"model": "m"}', header="a\n")
@example(raw=b"\xff\xfe{}", header=None)
def test_any_bytes_are_a_request_or_a_bad_request(raw: bytes, header: str | None) -> None:
    try:
        request = parse_request(raw, header)
        request.encode_for("p/m")  # what the attempt loop sends: also only ever BadRequest
    except BadRequest as exc:
        assert exc.status == 400 and exc.message
        return
    assert isinstance(request, ClientRequest)


@NO_DEADLINE
@given(value=json_values, header=st.none() | st.text(max_size=70))
def test_any_json_is_a_request_or_a_bad_request(value: Any, header: str | None) -> None:
    try:
        request = parse_request(orjson.dumps(value), header)
    except BadRequest as exc:  # the only way a body may be refused, and always with a message
        assert exc.message
        return
    forwarded = orjson.loads(request.encode_for("p/m"))
    assert forwarded["model"] == "p/m" and "provider" not in forwarded


order_field = st.lists(slugs, max_size=5)
provider_field = st.fixed_dictionaries({}, optional={
    "order": order_field, "only": order_field, "ignore": order_field, "allow_fallbacks": st.booleans(),
    "sort": st.sampled_from(["price", "latency", "throughput"]), "data_collection": st.just("deny"),
})
extra_fields = st.dictionaries(st.text(max_size=10).filter(lambda k: k not in {"model", "stream", "provider"}),
                               json_values, max_size=5)


@NO_DEADLINE
@given(
    model=st.text(min_size=1, max_size=256).filter(str.strip),
    stream=st.sampled_from([True, False, None, "absent"]),
    provider=st.none() | provider_field,
    extra=extra_fields,
)
def test_valid_bodies_round_trip_without_the_provider_field(
    model: str, stream: Any, provider: dict[str, Any] | None, extra: dict[str, Any]
) -> None:
    body: dict[str, Any] = {"model": model, **extra}
    if stream != "absent":
        body["stream"] = stream
    if provider is not None:
        body["provider"] = provider
    request = parse_request(orjson.dumps(body))
    assert request.model == model
    assert request.stream is bool(stream is True)
    forwarded = orjson.loads(request.encode_for("prov/model-x"))
    assert "provider" not in forwarded and "provider" not in request.body
    expected = {k: v for k, v in body.items() if k != "provider"} | {"model": "prov/model-x"}
    assert forwarded == expected
    if provider:
        assert request.prefs.order == tuple(dict.fromkeys(provider.get("order", [])))
        assert request.prefs.allow_fallbacks is provider.get("allow_fallbacks", True)


@NO_DEADLINE
@given(header=st.text(max_size=80) | slugs | slugs.map(lambda s: f" {s}\t"))
@example(header="a\n")
@example(header="openrouter\r\nSet-Cookie: x=1")
@example(header="../../etc")
@example(header="http://evil.example/v1")
@example(header="a" * 65)
def test_the_provider_header_must_be_one_slug(header: str) -> None:
    body = b'{"model": "gpt-4", "provider": {"order": ["zeta", "alpha"]}}'
    wanted = header.strip()
    if SLUG_ORACLE.fullmatch(wanted):
        request = parse_request(body, header)
        assert request.prefs.order == (wanted, *(s for s in ("zeta", "alpha") if s != wanted))
    else:
        with pytest.raises(BadRequest) as info:
            parse_request(body, header)
        assert info.value.param == "x-gatewayz-provider"
        assert info.value.message == "x-gatewayz-provider must be a provider slug"  # never echoed (a "-" is in it)


@NO_DEADLINE
@given(field=json_values | provider_field)
@example(field={"order": ["a\n"]})
@example(field={"only": ["a" * 65]})
@example(field={"order": "a"})
def test_preferences_hold_only_slugs(field: Any) -> None:
    try:
        prefs = parse_preferences(field, None)
    except BadRequest as exc:
        assert exc.param is not None and exc.param.startswith("provider")
        return
    assert isinstance(prefs, Preferences)
    named = [*prefs.order, *(prefs.only or ()), *prefs.ignore]
    assert all(SLUG_ORACLE.fullmatch(s) for s in named), named


# --- the HTTP API, fuzzed over a real socket ---------------------------------------------------------


class QuickGuard(GuardedHttpToolsProtocol):
    head_timeout_s = 0.5


class ErrorLogs(logging.Handler):
    """Records of ERROR and above from uvicorn and the proxy: an unhandled exception shows up here."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


@pytest.fixture
def fuzzed(mock_provider: Any, proxy_server: Any) -> Iterator[tuple[ProxyServer, ErrorLogs]]:
    mocks = [mock_provider(s) for s in ("a", "b")]
    config = gateway_config([(m.name, m.url) for m in mocks],
                            proxy={"max_body_bytes": MAX_BODY, "deadline_s": 1.0, "first_byte_timeout_s": 1.0})
    proxy = proxy_server(config, http=QuickGuard)
    errors = ErrorLogs()
    loggers = [logging.getLogger(n) for n in ("uvicorn.error", "uvicorn", "gatewayz", "")]
    for logger in loggers:
        logger.addHandler(errors)
    yield proxy, errors
    for logger in loggers:
        logger.removeHandler(errors)


def exchange(port: int, data: bytes, *, timeout: float = 5.0, trickle: float = 0.0) -> bytes:
    """Send raw bytes (one at a time every `trickle` s if set); return all the server sent until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            if trickle:
                for byte in data:
                    sock.sendall(bytes([byte]))
                    time.sleep(trickle)
            else:
                sock.sendall(data)
        except OSError:
            pass  # the server may close first: what it said before that is the answer
        received = b""
        while True:
            try:
                more = sock.recv(65536)
            except ConnectionResetError:
                break
            if not more:
                break
            received += more
    return received


def post_raw(path: bytes, headers: list[bytes], body: bytes) -> bytes:
    lines = [b"POST " + path + b" HTTP/1.1", b"Host: x", b"Connection: close", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def check_answer(raw: bytes, statuses: Counter[int]) -> None:
    """Nothing, or HTTP answers with an allowed status and no traceback; JSON errors are OpenAI-shaped."""
    assert b"Traceback" not in raw and b'File "' not in raw, raw[:500]
    for answer in re.split(rb"(?=HTTP/1\.[01] \d{3} )", raw):
        if not answer:
            continue
        status = int(answer[9:12])
        statuses[status] += 1
        assert status in ALLOWED, answer[:500]
        head, _, body = answer.partition(b"\r\n\r\n")
        if status != 200 and b"application/json" in head.lower() and body:
            assert "message" in json.loads(body.split(b"HTTP/1.")[0])["error"], answer[:500]


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**63 - 1, 1.5, -1e300, rng.randrange(-1000, 1000)])
    if kind in (3, 4):
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x3000)]))
                       for _ in range(rng.randrange(12)))
    if kind in (5, 6):
        return {rng.choice(["model", "stream", "provider", "messages", "order", "only", "x"]): random_json(rng, depth + 1)
                for _ in range(rng.randrange(5))}
    return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]


def random_body(rng: random.Random) -> bytes:  # noqa: PLR0911 (one return per shape)
    shape = rng.randrange(10)
    if shape == 0:
        return rng.randbytes(rng.randrange(200))
    if shape == 1:  # a good request with a field of the wrong type
        body: dict[str, Any] = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}
        body[rng.choice(["model", "stream", "provider", "messages", "max_tokens"])] = random_json(rng)
        return orjson.dumps(body)
    if shape == 2:  # invalid UTF-8 inside a string
        return b'{"model": "gpt-4", "messages": [{"role": "user", "content": "\xc3\x28\xff"}]}'
    if shape == 3:
        depth = rng.choice([100, 253, 254, 300, 1000, 5000])
        return b'{"model": "gpt-4", "x": ' + b"[" * depth + b"]" * depth + b"}"
    if shape == 4:  # a good request, sometimes a streamed one, with random provider preferences
        prefs = {"order": rng.sample(["a", "b", "c", "a\n", "../x", "http://h"], 2), "sort": rng.choice(["price", 1])}
        return orjson.dumps({"model": "gpt-4", "messages": [], "stream": rng.random() < 0.3, "provider": prefs})
    if shape == 5:  # just under or over the body limit
        size = MAX_BODY + rng.choice([-100, 1, 5000])
        return b'{"model": "gpt-4", "messages": [], "pad": "' + b"x" * (size - 48) + b'"}'
    return orjson.dumps(random_json(rng))


def test_fuzzed_bodies_never_get_a_500(fuzzed: tuple[ProxyServer, ErrorLogs]) -> None:
    proxy, errors = fuzzed
    rng = random.Random(7)
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        for _ in range(600):
            path = rng.choice(["/chat/completions", "/completions", "/embeddings"])
            headers = {"content-type": rng.choice(["application/json", "text/plain", "application/x-www-form-urlencoded"])}
            if rng.random() < 0.2:
                headers["x-gatewayz-provider"] = rng.choice(["a", "b", "zz", "a b", "\xe9", "x" * 300]).encode("latin-1")
            response = client.post(path, content=random_body(rng), headers=headers)
            check_answer(b"HTTP/1.1 %d X\r\ncontent-type: %s\r\n\r\n%s" % (
                response.status_code, response.headers.get("content-type", "").encode(), response.content), statuses)
    assert errors.records == []
    assert statuses[200] > 15 and statuses[400] > 100 and statuses[413] > 5  # "zz", "\xe9"...: 400 unknown_provider


GOOD = b'{"model": "gpt-4", "messages": [ ]}'
assert len(GOOD) == 35
MALFORMED: list[tuple[str, bytes]] = [
    ("no body", post_raw(b"/v1/chat/completions", [], b"")),
    ("no content-type", post_raw(b"/v1/chat/completions", [b"Content-Length: 35"], GOOD)),
    ("two equal content-lengths", post_raw(b"/v1/chat/completions", [b"Content-Length: 2", b"Content-Length: 2"], b"{}")),
    ("two content-lengths", post_raw(b"/v1/chat/completions", [b"Content-Length: 2", b"Content-Length: 5"], b"{}")),
    ("content-length and chunked", post_raw(
        b"/v1/chat/completions", [b"Content-Length: 2", b"Transfer-Encoding: chunked"], b"2\r\n{}\r\n0\r\n\r\n")),
    ("negative content-length", post_raw(b"/v1/chat/completions", [b"Content-Length: -1"], b"{}")),
    ("text content-length", post_raw(b"/v1/chat/completions", [b"Content-Length: abc"], b"{}")),
    ("float content-length", post_raw(b"/v1/chat/completions", [b"Content-Length: 1e3"], b"{}")),
    ("absurd content-length", post_raw(b"/v1/chat/completions", [b"Content-Length: " + b"9" * 40], b"{}")),
    ("content-length past int64", post_raw(b"/v1/chat/completions", [b"Content-Length: 18446744073709551617"], b"{}")),
    ("short content-length", post_raw(b"/v1/chat/completions", [b"Content-Length: 3"], b'{"model": "gpt-4"}')),
    ("bad chunk size", post_raw(b"/v1/chat/completions", [b"Transfer-Encoding: chunked"], b"zz\r\n{}\r\n0\r\n\r\n")),
    ("two provider headers", post_raw(b"/v1/chat/completions", [
        b"Content-Length: 35", b"x-gatewayz-provider: a", b"x-gatewayz-provider: b"], GOOD)),
    ("two authorizations", post_raw(b"/v1/chat/completions", [
        b"Authorization: Bearer x", b"Authorization: Basic y", b"Content-Length: 2"], b"{}")),
    ("latin-1 header", post_raw(b"/v1/chat/completions", [b"x-gatewayz-provider: \xe9\xff", b"Content-Length: 2"], b"{}")),
    ("nul in a header", post_raw(b"/v1/chat/completions", [b"x-title: a\x00b", b"Content-Length: 2"], b"{}")),
    ("no colon", post_raw(b"/v1/chat/completions", [b"garbage-header-line", b"Content-Length: 2"], b"{}")),
    ("bare LF", b"POST /v1/chat/completions HTTP/1.1\nHost: x\nContent-Length: 2\nConnection: close\n\n{}"),
    ("HTTP/1.0", b"POST /v1/chat/completions HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}"),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ("absolute form", post_raw(b"http://evil.example/v1/chat/completions", [b"Content-Length: 2"], b"{}")),
    ("percent path", post_raw(b"/v1/chat%2Fcompletions", [b"Content-Length: 2"], b"{}")),
    ("dot path", post_raw(b"/v1/../v1/chat/completions", [b"Content-Length: 2"], b"{}")),
    ("unknown method", b"BREW /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    ("pipelined", (post_raw(b"/v1/chat/completions", [b"Content-Length: 2"], b"{}").replace(b"Connection: close", b"X: y")
                   + post_raw(b"/v1/chat/completions", [b"Content-Length: 3"], b"{x}"))),
    ("not http", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256))),
]


@pytest.mark.parametrize(("name", "data"), MALFORMED, ids=[n for n, _ in MALFORMED])
def test_malformed_http_never_gets_a_500(fuzzed: tuple[ProxyServer, ErrorLogs], name: str, data: bytes) -> None:
    proxy, errors = fuzzed
    statuses: Counter[int] = Counter()
    check_answer(exchange(proxy.port, data), statuses)
    assert errors.records == []


def test_a_huge_head_is_refused_and_not_kept(fuzzed: tuple[ProxyServer, ErrorLogs]) -> None:
    proxy, _ = fuzzed
    for head in (b"x-big: " + b"a" * 200_000, b"x-many: 1\r\n" * 20_000):
        data = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n\r\n"
        answer = exchange(proxy.port, data)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    answer = exchange(proxy.port, b"GET /v1/models?" + b"q" * 200_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_slow_loris_head_is_cut_off(fuzzed: tuple[ProxyServer, ErrorLogs]) -> None:
    proxy, _ = fuzzed
    started = time.monotonic()
    answer = exchange(proxy.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200, trickle=0.02)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert time.monotonic() - started < 3
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as idle:  # connects, sends nothing
        assert idle.recv(1000).startswith(b"HTTP/1.1 408 ")
        assert idle.recv(1000) == b""


def test_slow_loris_body_is_answered_408_and_closed(fuzzed: tuple[ProxyServer, ErrorLogs]) -> None:
    proxy, errors = fuzzed
    body = b'{"model": "gpt-4", "messages": []}' + b" " * 200
    data = post_raw(b"/v1/chat/completions", [b"Content-Length: %d" % len(body)], b"")
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(data)
        answer = b""
        try:
            for byte in body:  # one byte every 20 ms: 5 s for the whole body, past the 1 s deadline
                sock.sendall(bytes([byte]))
                time.sleep(0.02)
                if time.monotonic() - started > 3:
                    break
        except OSError:
            pass
        while more := sock.recv(65536):
            answer += more
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"request_timeout" in answer
    assert time.monotonic() - started < 3
    assert errors.records == []


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_memory_stays_bounded_over_a_large_fuzz_run(fuzzed: tuple[ProxyServer, ErrorLogs]) -> None:
    proxy, errors = fuzzed
    rng = random.Random(11)

    def round_of(count: int) -> None:
        statuses: Counter[int] = Counter()
        with httpx.Client(base_url=proxy.url, timeout=10) as client:
            for i in range(count):
                client.post("/chat/completions", content=random_body(rng))
                if i % 50 == 0:  # and the head attacks: each would keep megabytes without the guard
                    check_answer(exchange(proxy.port, post_raw(b"/v1/x", [b"x-big: " + b"a" * 1_000_000], b"")),
                                 statuses)

    round_of(300)  # warm-up: the allocator's pools and every code path
    before = rss_mb()
    round_of(1500)
    grown = rss_mb() - before
    assert grown < 25, f"the process grew {grown:.1f} MB over 1,500 fuzzed requests"
    assert errors.records == []
