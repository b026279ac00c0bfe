"""The Messages API benchmark (issue 23): added latency of a translated stream vs a native one.

    python -m bench.translation                  # about a minute; prints a table and writes it into RESULTS.md
    python -m bench.translation --requests 100 --no-write

One `failover mock-provider` process on loopback answers both APIs at once (`--chunks` text pieces,
no delay): `POST /v1/messages` natively, `POST /v1/chat/completions` as an OpenAI-compatible
provider. The proxy (its real app, a config-only catalog, in a process of its own) declares that
mock twice: `native` with `api = "anthropic"` and `translated` with the default API, both offering
`claude-x`; the `x-gatewayz-provider` header picks one. The client sends the same Messages request
(`stream: true`) through the proxy to each, and, for the floor, straight to the mock: the Messages
request to `/v1/messages`, and its chat translation to `/v1/chat/completions`. Each request is timed
by the client (httpx, reading bytes) to its first text (the first `text_delta`, or chat `content`)
and to the end of the stream; the four kinds are interleaved, so a busy moment of this shared
machine falls on all of them. Added latency = through the proxy minus straight to the mock, per
kind; the translation's own cost is translated's added latency minus native's.
Bounded: a fixed count of requests, each with a 30 s timeout; every process it started is stopped by
PID (`bench/procs.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.procs import Processes, free_port, wait_http

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## Messages API (issue 23): added latency of a translated stream vs a native one"
MESSAGES = {"model": "claude-x", "max_tokens": 256, "stream": True, "messages": [{"role": "user", "content": "hello"}]}
CHAT = {"model": "claude-x", "max_tokens": 256, "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "hello"}]}  # fmt: skip  # MESSAGES as the proxy translates it
ANTHROPIC = {"x-api-key": "bench", "anthropic-version": "2023-06-01"}
KINDS = ("direct messages", "direct chat", "proxy native", "proxy translated")


def config_text(mock_port: int) -> str:
    url = f"http://127.0.0.1:{mock_port}/v1"
    return f"""[proxy]
first_byte_timeout_s = 30
deadline_s = 60

[[providers]]
slug = "native"
name = "Native"
base_url = "{url}"
listing = "none"
probe = "none"
api = "anthropic"

[[providers]]
slug = "translated"
name = "Translated"
base_url = "{url}"
listing = "none"
probe = "none"

[[models]]
model_id = "claude-x"
offers = [
  {{ provider = "native", provider_model_id = "claude-x" }},
  {{ provider = "translated", provider_model_id = "claude-x" }},
]
"""


def serve(config_path: str, port: int) -> None:
    """The proxy process: the real app, in-process state only (as `bench.hedge` runs it)."""
    import uvicorn

    from proxy.config import load_config
    from proxy.http.app import create_app

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    app = create_app(load_config(config_path, env))
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning")


@contextlib.contextmanager
def processes(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """(the mock's /v1 URL, the proxy's base URL), both up; both stopped on the way out."""
    procs = Processes(ROOT / "bench" / "out" / "translation")
    mock_port, proxy_port = free_port(), free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(config_text(mock_port))
    try:
        mock = procs.start("mock", [sys.executable, "-m", "proxy.cli", "mock-provider", "--port", str(mock_port),
                                    "--name", "bench", "--chunks", str(args.chunks)])  # fmt: skip
        wait_http(mock, f"http://127.0.0.1:{mock_port}/_mock/stats", 30)
        proxy = procs.start("proxy", [sys.executable, "-m", "bench.translation", "--serve", f.name, str(proxy_port)])
        wait_http(proxy, f"http://127.0.0.1:{proxy_port}/healthz", 30)
        yield f"http://127.0.0.1:{mock_port}/v1", f"http://127.0.0.1:{proxy_port}"
    finally:
        procs.stop_all()
        os.unlink(f.name)


def timed(client: httpx.Client, url: str, body: dict[str, object], headers: dict[str, str]) -> tuple[float, float]:
    """(seconds to the first text, seconds to the end of the stream), as the client reads the bytes."""
    started = time.perf_counter()
    first = 0.0
    with client.stream("POST", url, json=body, headers=headers) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            if not first and (b"text_delta" in chunk or b'"content":"bench#' in chunk):
                first = time.perf_counter() - started
    total = time.perf_counter() - started
    if not first:
        raise RuntimeError(f"no text in the stream from {url}")
    return first, total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    seen: dict[str, dict[str, list[float]]] = {kind: {"first": [], "total": []} for kind in KINDS}
    with processes(args) as (mock, proxy), httpx.Client(timeout=30) as client:
        calls = {
            "direct messages": (f"{mock}/messages", MESSAGES, ANTHROPIC),
            "direct chat": (f"{mock}/chat/completions", CHAT, {}),
            "proxy native": (f"{proxy}/v1/messages", MESSAGES, {**ANTHROPIC, "x-gatewayz-provider": "native"}),
            "proxy translated": (f"{proxy}/v1/messages", MESSAGES, {**ANTHROPIC, "x-gatewayz-provider": "translated"}),
        }
        for round_ in range(args.warm_up + args.requests):
            kinds = KINDS[round_ % len(KINDS) :] + KINDS[: round_ % len(KINDS)]  # a rotating order
            for kind in kinds:
                first, total = timed(client, *calls[kind])
                if round_ >= args.warm_up:
                    seen[kind]["first"].append(first)
                    seen[kind]["total"].append(total)
    return seen


def table(seen: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> str:
    def stat(kind: str, what: str, q: float) -> float:
        return percentile(seen[kind][what], q) * 1000

    rows = []
    for kind in KINDS:
        rows.append(
            f"| {kind} | {stat(kind, 'first', 0.5):.2f} | {stat(kind, 'first', 0.99):.2f} | "
            f"{stat(kind, 'total', 0.5):.2f} | {stat(kind, 'total', 0.99):.2f} |"
        )

    def added(proxy: str, direct: str, what: str, q: float) -> float:
        return stat(proxy, what, q) - stat(direct, what, q)

    native = {w: added("proxy native", "direct messages", w, 0.5) for w in ("first", "total")}
    translated = {w: added("proxy translated", "direct chat", w, 0.5) for w in ("first", "total")}
    lines = [
        SECTION,
        "",
        f"Written by `python -m bench.translation` on {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}: "
        f"one mock provider answering both APIs with {args.chunks} text pieces at once; {args.warm_up} unmeasured "
        f"rounds, then {args.requests} rounds of the four kinds in a rotating order, sequential; the client times "
        "each stream to its first text and to its end. Load average "
        f"{os.getloadavg()[0]:.2f} (a shared machine: compare rows of one run).",
        "",
        "| kind | first text p50 ms | first text p99 ms | whole stream p50 ms | whole stream p99 ms |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        f"Added by the proxy (p50, proxy minus direct): native {native['first']:.2f} ms to the first text, "
        f"{native['total']:.2f} ms to the end; translated {translated['first']:.2f} ms and "
        f"{translated['total']:.2f} ms. The translation's own cost: "
        f"{translated['first'] - native['first']:+.2f} ms to the first text, "
        f"{translated['total'] - native['total']:+.2f} ms over the whole stream.",
    ]
    return "\n".join(lines) + "\n"


def write_results(section: str) -> None:
    text = RESULTS.read_text(encoding="utf-8")
    if SECTION in text:
        before, rest = text.split(SECTION, 1)
        after = rest[rest.find("\n## ") :] if "\n## " in rest else ""
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.translation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="measured rounds (each: the four kinds)")
    parser.add_argument("--warm-up", type=int, default=30)
    parser.add_argument("--chunks", type=int, default=20, help="text pieces in each streamed answer")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    parser.add_argument("--serve", nargs=2, metavar=("CONFIG", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    seen = measure(args)
    section = table(seen, args)
    print(section)
    if not args.no_write:
        write_results(section)
    for kind in KINDS:
        print(kind, "mean first", round(statistics.fmean(seen[kind]["first"]) * 1000, 2), "ms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
