"""What the slow requests at concurrency 1 coincide with: the proxy's background work, timed.

Runs the real app (`app_from_environment`, as `failover serve` does: uvicorn, uvloop, the head
guard, batched access log, tuned GC, its database and every background task) in this process, with
probes that record when each kind of background work ran: the catalog refresh, the state gauges,
the health flush, the access-log flush and the garbage collector. A client in another process sends
sequential requests for `--seconds` and records when each started and how long it took (both
processes read the same monotonic clock). The report lists, per kind of work, how many requests
overlapped it and how many of those were slow (over the run's p99), and the slowest requests with
the work they overlapped.

    python -m bench.tail [--seconds 65] [--database-url URL]    # starts its own upstream, on loopback

Bounded: one upstream process (stopped by PID at the end), one client process, `--seconds` of load.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.measure import percentile
from bench.procs import Processes, free_port, wait_http
from bench.targets import MODEL, PROVIDER_KEY, ROOT, database_for_run, drop_database, proxy_config

Interval = tuple[float, float]


class Probes:
    """(start, end) on the monotonic clock of each run of each kind of background work, and for each
    proxied request the server's own view: start, wall seconds and the process's CPU seconds meanwhile."""

    def __init__(self) -> None:
        self.runs: dict[str, list[Interval]] = {}
        self.handled: list[tuple[float, float, float]] = []
        self._gc_started = 0.0

    def add(self, kind: str, start: float, end: float) -> None:
        self.runs.setdefault(kind, []).append((start, end))

    def wrap_async(self, owner: object, name: str, kind: str) -> None:
        work: Callable[[], Awaitable[Any]] = getattr(owner, name)

        async def timed() -> Any:
            start = time.monotonic()
            try:
                return await work()
            finally:
                self.add(kind, start, time.monotonic())

        setattr(owner, name, timed)

    def wrap_sync(self, owner: object, name: str, kind: str) -> None:
        work: Callable[..., Any] = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return work(*args, **kwargs)
            finally:
                self.add(kind, start, time.monotonic())

        setattr(owner, name, timed)

    def time_handler(self, app: Any) -> None:
        handler = app.handler
        handled = self.handled

        async def timed(scope: Any, receive: Any, send: Any) -> None:
            start, cpu = time.monotonic(), time.process_time()
            try:
                await handler(scope, receive, send)
            finally:
                handled.append((start, time.monotonic() - start, time.process_time() - cpu))

        app.handler = timed

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.monotonic()
        else:
            self.add(f"gc gen{info['generation']}", self._gc_started, time.monotonic())


async def serve(port: int, seconds: float, out: Path, probes: Probes) -> None:
    import uvicorn

    from proxy.http.head_guard import GuardedHttpToolsProtocol
    from proxy.http.server import BatchedStreamHandler, app_from_environment

    app = app_from_environment()
    gateway = app.gateway
    probes.wrap_async(gateway, "refresh_catalog", "catalog refresh")
    probes.wrap_async(gateway, "flush_health", "health flush")
    probes.wrap_async(gateway, "_update_gauges", "state gauges")
    probes.wrap_sync(gateway.catalog, "replace", "catalog replace (sync part)")
    probes.wrap_sync(gateway.flusher, "_gather", "health flush gather (sync part)")
    for handler in __import__("logging").getLogger("gatewayz.access").handlers:
        if isinstance(handler, BatchedStreamHandler):
            probes.wrap_sync(handler, "flush", "access-log flush")
    gc.callbacks.append(probes.on_gc)
    probes.time_handler(app)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, loop="none", http=GuardedHttpToolsProtocol,
                            lifespan="on", access_log=False, log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.tail", "--client", "--port", str(port), "--seconds", str(seconds),
        "--out", str(out), env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    await asyncio.wait_for(client.wait(), seconds + 60)
    server.should_exit = True
    await serving
    if not client.returncode == 0:
        raise RuntimeError(f"the client failed (exit {client.returncode})")


async def client(port: int, seconds: float, out: Path) -> None:
    from bench.client import Connection, chat_body

    conn = await Connection.open(port)
    body = chat_body(MODEL)
    records: list[tuple[float, float]] = []
    for _ in range(200):  # warm-up
        await conn.post("/v1/chat/completions", body)
    stop = time.monotonic() + seconds
    while (start := time.monotonic()) < stop:
        answer = await conn.post("/v1/chat/completions", body)
        if answer.status != 200:
            raise RuntimeError(f"status {answer.status}")
        records.append((start, time.monotonic() - start))
    conn.close()
    out.write_text(json.dumps(records))


def overlaps(request: Interval, runs: list[Interval]) -> bool:
    start, end = request
    return any(s <= end and e >= start for s, e in runs)


def report(records: list[tuple[float, float]], probes: Probes) -> str:
    first, last = records[0][0], records[-1][0] + records[-1][1]
    probes.runs = {k: kept for k, runs in probes.runs.items() if (kept := [r for r in runs if r[1] >= first
                                                                             and r[0] <= last])}
    latencies = [lat for _, lat in records]
    p99 = percentile(latencies, 99)
    slow = {i for i, lat in enumerate(latencies) if lat > p99}
    spans = [(t, t + lat) for t, lat in records]
    lines = [f"{len(records)} sequential requests: p50 {percentile(latencies, 50) * 1e3:.3f} ms, "
             f"p99 {p99 * 1e3:.3f} ms, max {max(latencies) * 1e3:.3f} ms; {len(slow)} slower than p99", "",
             "| background work | runs | median ms | max ms | requests overlapping | of them slow | "
             "slow requests it explains |", "|---|---:|---:|---:|---:|---:|---:|"]
    for kind, runs in sorted(probes.runs.items()):
        durations = sorted((e - s) * 1e3 for s, e in runs)
        hit = [i for i, span in enumerate(spans) if overlaps(span, runs)]
        slow_hit = [i for i in hit if i in slow]
        lines.append(f"| {kind} | {len(runs)} | {durations[len(durations) // 2]:.3f} | {durations[-1]:.3f} | "
                     f"{len(hit)} | {len(slow_hit)} | {len(slow_hit) / max(1, len(slow)):.0%} |")
    lines += ["", *_server_side(probes)]
    unexplained = [i for i in slow if not any(overlaps(spans[i], r) for r in probes.runs.values())]
    lines += ["", f"slow requests overlapping none of these: {len(unexplained)} of {len(slow)}", "",
              "slowest 15: t (s from start), ms, overlapping work"]
    t0 = records[0][0] if records else 0.0
    for i in sorted(slow, key=lambda i: -latencies[i])[:15]:
        kinds = [k for k, r in probes.runs.items() if overlaps(spans[i], r)]
        lines.append(f"  {records[i][0] - t0:8.3f}  {latencies[i] * 1e3:8.3f}  {', '.join(kinds) or '-'}")
    return "\n".join(lines)


def _server_side(probes: Probes) -> list[str]:
    """The requests slow inside the proxy, split by whether the process was busy (its CPU time meanwhile
    near the wall time: the proxy's own work) or not (waiting: preempted by other processes, the upstream)."""
    handled = probes.handled[200:]  # past the warm-up
    walls = [w for _, w, _ in handled]
    if not walls:
        return []
    p99 = percentile(walls, 99)
    slow = [(t, w, c) for t, w, c in handled if w > p99]
    busy = [(t, w, c) for t, w, c in slow if c >= 0.5 * w]
    lines = [f"inside the proxy (handler start to end): p50 {percentile(walls, 50) * 1e3:.3f} ms, "
             f"p99 {p99 * 1e3:.3f} ms; of the {len(slow)} slower than p99, {len(busy)} had the process busy "
             f"(CPU >= half the wall time: the proxy's own work), {len(slow) - len(busy)} waiting "
             "(CPU < half: preempted, or the upstream)"]
    for kind, runs in sorted(probes.runs.items()):
        hits = sum(1 for t, w, _ in busy if overlaps((t, t + w), runs))
        if hits:
            lines.append(f"  busy and overlapping {kind}: {hits}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=65)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL",
                                                                 "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "tail.json")
    args = parser.parse_args()
    import uvloop

    if args.client:
        uvloop.run(client(args.port, args.seconds, args.out))
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    procs = Processes(args.out.parent / "logs")
    name = f"gatewayz_tail_{os.getpid()}"
    database = database_for_run(args.database_url, name)
    try:
        upstream_port, port = free_port(), free_port()
        upstream = procs.start("tail-upstream", [sys.executable, "-m", "bench.upstream", "--port", str(upstream_port)],
                               {**os.environ, "PYTHONPATH": str(ROOT)})
        wait_http(upstream, f"http://127.0.0.1:{upstream_port}/v1/models", 20)
        config = args.out.parent / "tail.toml"
        config.write_text(proxy_config(upstream_port, free_port(), free_port()))
        os.environ.update({"FAILOVER_CONFIG": str(config), "BENCH_FAST_KEY": PROVIDER_KEY,
                           "BENCH_REFUSED_KEY": PROVIDER_KEY, "BENCH_BROKEN_KEY": PROVIDER_KEY})
        if database:
            os.environ["DATABASE_URL"] = database
        sys.stderr = open(args.out.parent / "logs" / "tail-access.log", "w")  # noqa: SIM115 (the access lines)
        probes = Probes()
        uvloop.run(serve(port, args.seconds, args.out, probes))
        sys.stderr = sys.__stderr__
        print(report(json.loads(args.out.read_text()), probes))
    finally:
        procs.stop_all()
        if database:
            asyncio.run(drop_database(args.database_url, name))


if __name__ == "__main__":
    main()
