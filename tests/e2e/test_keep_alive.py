"""An idle client connection outlives the clients' own idle expiry: the client, never the proxy, is the
one that closes it, so a request written into a connection the client still thinks usable is served.

httpx (and so the openai SDK) reuses an idle connection for up to 5 s (`keepalive_expiry`), uvicorn
closed one after exactly 5 s: a request sent at that instant was lost before the proxy saw it."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from proxy.mock.testing import free_port

CONFIG = """
[proxy]
{proxy}
[[providers]]
slug = "a"
name = "A"
base_url = "{url}"
listing = "none"
[[models]]
model_id = "gpt-4"
offers = [{{ provider = "a", provider_model_id = "a/gpt-4" }}]
"""
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n%s"
)
BODY = b'{"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}'


def serve(tmp_path: Path, url: str, proxy: str = "") -> tuple[subprocess.Popen[bytes], int]:
    config = tmp_path / "failover.toml"
    config.write_text(CONFIG.format(url=url, proxy=proxy))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(FAILOVER_CONFIG=str(config), FAILOVER_DATA_DIR=str(tmp_path / "data"))
    env["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:1/unreachable"  # the config's offers serve
    child = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        assert child.poll() is None and time.monotonic() < deadline
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return child, port
        except httpx.TransportError:
            time.sleep(0.05)


def answer(sock: socket.socket) -> bytes:
    """One HTTP/1.1 answer with a content-length, read off the socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the proxy closed the connection"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the proxy closed the connection mid-answer"
        rest += chunk
    return head.split(b"\r\n", 1)[0]


def closed_by_peer(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""


def test_an_idle_connection_outlives_the_clients_expiry_and_is_served(tmp_path: Path, mock_provider: Any) -> None:
    child, port = serve(tmp_path, mock_provider("a").url)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(REQUEST % (len(BODY), BODY))
            assert answer(sock) == b"HTTP/1.1 200 OK"
            time.sleep(6.0)  # past httpx's and the openai SDK's 5 s keep-alive expiry
            assert not closed_by_peer(sock), "the proxy closed an idle connection its clients still reuse"
            sock.sendall(REQUEST % (len(BODY), BODY))
            assert answer(sock) == b"HTTP/1.1 200 OK"
    finally:
        child.terminate()
        child.wait(timeout=15)


def test_the_idle_time_is_configurable(tmp_path: Path, mock_provider: Any) -> None:
    child, port = serve(tmp_path, mock_provider("a").url, proxy="keep_alive_s = 1")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(REQUEST % (len(BODY), BODY))
            assert answer(sock) == b"HTTP/1.1 200 OK"
            time.sleep(2.0)
            assert closed_by_peer(sock)
    finally:
        child.terminate()
        child.wait(timeout=15)
