"""The measurements. Each is bounded in time and count, interleaves its targets (round by round,
in a rotating order, or request by request) so that noise from a shared machine hits them alike,
and returns plain data for `bench/results.json`.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from typing import Any

from bench.client import Connection, chat_body
from bench.procs import cpu_seconds, rss_mb
from bench.targets import FAILOVER_MODELS, MODEL, Target
from bench.wrk import run_wrk


def rotations(items: Sequence[Target], rounds: int) -> list[list[Target]]:
    return [list(items[r % len(items) :]) + list(items[: r % len(items)]) for r in range(rounds)]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def throughput(targets: Sequence[Target], *, rounds: int, seconds: float, connections: int = 32) -> dict[str, Any]:
    """wrk at `connections` connections, non-streaming; the median requests/s of `rounds` runs."""
    for target in targets:  # warm-up: connection pools, caches, JIT-free but lazy imports
        run_wrk(target.url, connections=connections, seconds=2, token=target.token)
    runs: dict[str, list[dict[str, float]]] = {t.name: [] for t in targets}
    for r, order in enumerate(rotations(targets, rounds)):
        for target in order:
            cpu = cpu_seconds(target.pid)
            run = run_wrk(target.url, connections=connections, seconds=seconds, token=target.token)
            busy = (cpu_seconds(target.pid) - cpu) / run.duration_s
            runs[target.name].append({"rps": run.rps, "errors": run.errors, "cpu": busy, "p50_ms": run.p50_ms})
            log(f"throughput round {r + 1}/{rounds} {target.name}: {run.rps:,.0f} req/s, "
                f"{run.errors} errors, target CPU {busy:.0%}")
    return {
        name: {"rps": median([x["rps"] for x in xs]), "errors": sum(x["errors"] for x in xs),
               "cpu": median([x["cpu"] for x in xs]), "runs": xs}
        for name, xs in runs.items()
    }


def latency_c1(targets: Sequence[Target], *, rounds: int, seconds: float) -> dict[str, Any]:
    """wrk at one connection: the request latency as a client sees it, median and p99 (ms)."""
    runs: dict[str, list[dict[str, float]]] = {t.name: [] for t in targets}
    for r, order in enumerate(rotations(targets, rounds)):
        for target in order:
            run = run_wrk(target.url, connections=1, seconds=seconds, token=target.token)
            runs[target.name].append({"p50_ms": run.p50_ms, "p99_ms": run.p99_ms, "requests": run.requests,
                                      "errors": run.errors})
            log(f"latency c=1 round {r + 1}/{rounds} {target.name}: p50 {run.p50_ms:.3f} ms, p99 {run.p99_ms:.3f} ms")
    return {
        name: {"p50_ms": median([x["p50_ms"] for x in xs]), "p99_ms": median([x["p99_ms"] for x in xs]),
               "errors": sum(x["errors"] for x in xs), "runs": xs}
        for name, xs in runs.items()
    }


async def _ttfb(targets: Sequence[Target], samples: int) -> dict[str, Any]:
    conns = {t.name: await Connection.open(t.port) for t in targets}
    body = chat_body(MODEL, stream=True, chunks=3, interval_ms=1)
    first: dict[str, list[float]] = {t.name: [] for t in targets}
    bad: dict[str, int] = {t.name: 0 for t in targets}
    for i in range(samples + 20):
        for target in rotations(targets, len(targets))[i % len(targets)]:
            answer = await conns[target.name].post("/v1/chat/completions", body, token=target.token)
            if answer.status != 200 or not answer.done:
                bad[target.name] += 1
            elif i >= 20:  # the first ones warm up
                first[target.name].append(answer.first_byte_s * 1000)
    for conn in conns.values():
        conn.close()
    return {
        name: {"p50_ms": median(xs), "p99_ms": percentile(xs, 99), "samples": len(xs), "bad": bad[name]}
        for name, xs in first.items()
    }


def ttfb(targets: Sequence[Target], *, samples: int) -> dict[str, Any]:
    """Time to the first byte of a streamed answer's body (the first SSE event), request by request."""
    result = asyncio.run(_ttfb(targets, samples))
    for name, figures in result.items():
        log(f"ttfb {name}: p50 {figures['p50_ms']:.3f} ms, p99 {figures['p99_ms']:.3f} ms, {figures['bad']} bad")
    return result


async def _failover(proxy: Target, rounds: int) -> dict[str, Any]:
    conn = await Connection.open(proxy.port)
    kinds = {"healthy": lambda i: MODEL, "refused": lambda i: f"refused-{i}", "status_500": lambda i: f"broken-{i}"}
    latency: dict[str, list[float]] = {k: [] for k in kinds}
    unexpected: dict[str, int] = {k: 0 for k in kinds}
    for _ in range(5):  # warm-up on the healthy model only: failing offers are asked a bounded number of times
        await conn.post("/v1/chat/completions", chat_body(MODEL))
    for _ in range(rounds):
        for i in range(FAILOVER_MODELS):
            for kind, model in kinds.items():
                answer = await conn.post("/v1/chat/completions", chat_body(model(i)))
                attempts = answer.headers.get(b"x-gatewayz-attempts", b"0")
                if answer.status != 200 or attempts != (b"1" if kind == "healthy" else b"2"):
                    unexpected[kind] += 1
                else:
                    latency[kind].append(answer.total_s * 1000)
    conn.close()
    out: dict[str, Any] = {
        kind: {"p50_ms": median(xs), "p99_ms": percentile(xs, 99), "samples": len(xs), "unexpected": unexpected[kind]}
        for kind, xs in latency.items()
    }
    for kind in ("refused", "status_500"):
        out[kind]["added_p50_ms"] = out[kind]["p50_ms"] - out["healthy"]["p50_ms"]
    return out


def failover(proxy: Target, *, rounds: int) -> dict[str, Any]:
    """Request latency when the first offer refuses the connection / answers 500, against a healthy
    single offer; the difference is the time to fail over. Each failing offer is asked `rounds` times
    (at most 3: a fourth failure in its window makes its passive health unhealthy and ranks it last)."""
    result = asyncio.run(_failover(proxy, min(rounds, 3)))
    for kind, figures in result.items():
        log(f"failover {kind}: p50 {figures['p50_ms']:.3f} ms ({figures['samples']} samples, "
            f"{figures['unexpected']} unexpected)")
    return result


async def _stream_worker(port: int, body: bytes, stop_at: float, tally: dict[str, int], token: str | None) -> None:
    try:
        conn = await Connection.open(port)
    except OSError:
        tally["connect_errors"] += 1
        return
    try:
        while time.monotonic() < stop_at:
            answer = await conn.post("/v1/chat/completions", body, token=token)
            tally["events"] += answer.events
            if answer.status == 200 and answer.done and not answer.error_event:
                tally["streams"] += 1
            else:
                tally["failed"] += 1
    except (ConnectionError, OSError):
        tally["broken"] += 1
    finally:
        conn.close()


async def _streams(target: Target, streams: int, seconds: float, chunks: int, interval_ms: float) -> dict[str, Any]:
    body = chat_body(MODEL, stream=True, chunks=chunks, interval_ms=interval_ms)
    tally = {"streams": 0, "events": 0, "failed": 0, "broken": 0, "connect_errors": 0}
    before = rss_mb(target.pid)
    started = time.monotonic()
    stop_at = started + seconds
    workers = []
    for i in range(streams):  # ramp up: 100 new connections every 10 ms
        workers.append(asyncio.ensure_future(_stream_worker(target.port, body, stop_at, tally, target.token)))
        if i % 100 == 99:
            await asyncio.sleep(0.01)
    peak, samples = before, []
    while not all(w.done() for w in workers):
        await asyncio.sleep(0.25)
        rss = rss_mb(target.pid)
        samples.append(rss)
        peak = max(peak, rss)
    elapsed = time.monotonic() - started
    await asyncio.sleep(2.0)
    after = rss_mb(target.pid)
    return {
        **tally, "seconds": elapsed, "streams_per_s": tally["streams"] / elapsed,
        "events_per_s": tally["events"] / elapsed,
        "rss_before_mb": before, "rss_peak_mb": peak, "rss_median_during_mb": median(samples), "rss_after_mb": after,
    }


def slow_streams(
    targets: Sequence[Target], *, streams: int, seconds: float, rounds: int = 2, chunks: int = 10,
    interval_ms: float = 100,
) -> dict[str, Any]:
    """`streams` concurrent streams, a chunk every `interval_ms`, for about `seconds`, `rounds` times per
    target (interleaved): throughput, and each target's resident memory before the first round, at the
    peak of each round and 2 s after the last. Bounded memory: the second round peaks no higher."""
    import uvloop

    runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    for r in range(rounds):
        for target in targets:
            result = uvloop.run(_streams(target, streams, seconds, chunks, interval_ms))
            runs[target.name].append(result)
            log(f"streams round {r + 1}/{rounds} {target.name}: {result['streams']} streams "
                f"({result['streams_per_s']:.0f}/s), "
                f"{result['failed'] + result['broken'] + result['connect_errors']} failed, RSS "
                f"{result['rss_before_mb']:.0f} -> {result['rss_peak_mb']:.0f} -> {result['rss_after_mb']:.0f} MiB")
    out: dict[str, Any] = {}
    for name, xs in runs.items():
        out[name] = {
            "streams": sum(x["streams"] for x in xs), "events": sum(x["events"] for x in xs),
            "failed": sum(x["failed"] for x in xs), "broken": sum(x["broken"] for x in xs),
            "connect_errors": sum(x["connect_errors"] for x in xs),
            "streams_per_s": median([x["streams_per_s"] for x in xs]),
            "events_per_s": median([x["events_per_s"] for x in xs]),
            "ideal_streams_per_s": streams / (chunks * interval_ms / 1000),
            "rss_before_mb": xs[0]["rss_before_mb"], "rss_peak_mb": max(x["rss_peak_mb"] for x in xs),
            "rss_peaks_mb": [x["rss_peak_mb"] for x in xs], "rss_after_mb": xs[-1]["rss_after_mb"], "runs": xs,
        }
    return out
