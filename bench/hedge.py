"""The hedging benchmark (issue 17): p50/p99 when the first offer is slow 10 % of the time, hedging off vs on.

    python -m bench.hedge                       # about 2 minutes; prints a table and writes it into RESULTS.md
    python -m bench.hedge --requests 100 --no-write

Two `failover mock-provider` processes on loopback: `a` (priority 0) answers after `--latency-ms` and,
on every tenth request, after `--slow-ms` instead (`--fault slow_first_byte --fail-rate 0.1`); `b`
(priority 1) always answers after `--latency-ms`. The proxy runs in a process of its own on the real
app (`proxy.http.app.create_app`) with a config-only catalog (no database: nothing here needs one).
For each setting (hedging off, on with a budget of 0.1, on with 0.25), and for non-streaming and
streaming requests, a fresh proxy gets `--warm-up` unmeasured requests (so the learned times have
history), then `--requests` sequential ones, each timed by the client until the whole answer is in.
Bounded: a fixed count of requests, each with a 30 s timeout; every process it started is stopped by
PID (`bench/procs.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.procs import Processes, Started, free_port, wait_http
from bench.report import HEDGE_SECTION

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = HEDGE_SECTION
SETTINGS = (("off", None), ("on, hedge_budget 0.1", 0.1), ("on, hedge_budget 0.25", 0.25))
BODY = {"model": "gpt-4", "messages": [{"role": "user", "content": "hello"}]}


def config_text(a_port: int, b_port: int, budget: float | None) -> str:
    hedge = f"hedge = true\nhedge_budget = {budget}\n" if budget is not None else ""
    return f"""[proxy]
first_byte_timeout_s = 60
deadline_s = 120
{hedge}
[[providers]]
slug = "a"
name = "A"
base_url = "http://127.0.0.1:{a_port}/v1"
listing = "none"
priority = 0

[[providers]]
slug = "b"
name = "B"
base_url = "http://127.0.0.1:{b_port}/v1"
listing = "none"
priority = 1

[[models]]
model_id = "gpt-4"
offers = [{{ provider = "a", provider_model_id = "a/gpt-4" }}, {{ provider = "b", provider_model_id = "b/gpt-4" }}]
"""


def serve(config_path: str, port: int) -> None:
    """The proxy process: the real app, in-process state only."""
    import uvicorn

    from proxy.config import load_config
    from proxy.http.app import create_app

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    app = create_app(load_config(config_path, env))
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning")


@contextlib.contextmanager
def proxy_process(procs: Processes, config: str, name: str) -> Iterator[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(config)
    port = free_port()
    started = procs.start(name, [sys.executable, "-m", "bench.hedge", "--serve", f.name, str(port)])
    try:
        wait_http(started, f"http://127.0.0.1:{port}/healthz", 30)
        yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        procs.stop(started)
        os.unlink(f.name)


def one(client: httpx.Client, url: str, stream: bool) -> tuple[float, str]:
    """Seconds until the whole answer is in, and who served it."""
    started = time.perf_counter()
    if stream:
        with client.stream("POST", url, json={**BODY, "stream": True}) as response:
            for _ in response.iter_bytes():
                pass
    else:
        response = client.post(url, json=BODY)
    response.raise_for_status()
    return time.perf_counter() - started, response.headers["x-gatewayz-provider"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_setting(
    procs: Processes, ports: tuple[int, int], budget: float | None, stream: bool, args: argparse.Namespace
) -> dict[str, float]:
    name = f"proxy-{'stream' if stream else 'json'}-{budget}"
    with proxy_process(procs, config_text(*ports, budget), name) as url, httpx.Client(timeout=30) as client:
        for _ in range(args.warm_up):
            one(client, url, stream)
        times, served_by_b = [], 0
        for _ in range(args.requests):
            seconds, provider = one(client, url, stream)
            times.append(seconds)
            served_by_b += provider == "b"
        metrics = client.get(url.replace("/v1/chat/completions", "/metrics")).text
    hedges = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'gatewayz_hedges_total\{model="gpt-4",outcome="(\w+)"\} ([0-9.e+]+)', metrics)
    }
    return {
        "p50": percentile(times, 0.5) * 1000,
        "p99": percentile(times, 0.99) * 1000,
        "max": max(times) * 1000,
        "mean": statistics.fmean(times) * 1000,
        "by_b": served_by_b,
        "hedged": sum(v for k, v in hedges.items() if k != "over_budget"),
        "over_budget": hedges.get("over_budget", 0.0),
    }


def mocks(procs: Processes, args: argparse.Namespace) -> tuple[Started, Started, int, int]:
    a_port, b_port = free_port(), free_port()
    common = ["--latency-ms", str(args.latency_ms)]
    a = procs.start(
        "mock-a",
        [
            sys.executable,
            "-m",
            "proxy.cli",
            "mock-provider",
            "--port",
            str(a_port),
            "--name",
            "a",
            "--fault",
            "slow_first_byte",
            "--first-byte-ms",
            str(args.slow_ms),
            "--fail-rate",
            "0.1",
            *common,
        ],
    )
    b = procs.start(
        "mock-b", [sys.executable, "-m", "proxy.cli", "mock-provider", "--port", str(b_port), "--name", "b", *common]
    )
    for started, port in ((a, a_port), (b, b_port)):
        wait_http(started, f"http://127.0.0.1:{port}/_mock/stats", 30)
    return a, b, a_port, b_port


def table(rows: list[tuple[str, str, dict[str, float]]], args: argparse.Namespace) -> str:
    lines = [
        SECTION,
        "",
        f"Written by `python -m bench.hedge` on {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}: "
        f"offer `a` answers after {args.latency_ms:g} ms, and after {args.slow_ms:g} ms on every tenth request; "
        f"offer `b` after {args.latency_ms:g} ms. {args.warm_up} unmeasured requests, then {args.requests} sequential "
        "ones per row, each a fresh proxy; the client times the whole answer. `served by b` counts the measured "
        "requests; `hedges started` and `over budget` come from the proxy's `gatewayz_hedges_total` and include "
        "the warm-up. Load average "
        f"{os.getloadavg()[0]:.2f} (a shared machine: compare rows of one run).",
        "",
        "| requests | hedging | p50 ms | p99 ms | max ms | mean ms | served by b | hedges started | over budget |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, setting, r in rows:
        lines.append(
            f"| {kind} | {setting} | {r['p50']:.1f} | {r['p99']:.1f} | {r['max']:.1f} | {r['mean']:.1f} | "
            f"{r['by_b']:.0f} | {r['hedged']:.0f} | {r['over_budget']:.0f} |"
        )
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
    parser = argparse.ArgumentParser(prog="python -m bench.hedge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warm-up", type=int, default=40)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--slow-ms", type=float, default=500.0)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    parser.add_argument("--serve", nargs=2, metavar=("CONFIG", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    procs = Processes(ROOT / "bench" / "out" / "hedge")
    rows = []
    try:
        _, _, a_port, b_port = mocks(procs, args)
        for stream in (False, True):
            for setting, budget in SETTINGS:
                result = run_setting(procs, (a_port, b_port), budget, stream, args)
                kind = "stream" if stream else "non-streaming"
                rows.append((kind, setting, result))
                print(kind, setting, {k: round(v, 1) for k, v in result.items()}, flush=True)
    finally:
        procs.stop_all()
    section = table(rows, args)
    print(section)
    if not args.no_write:
        write_results(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
