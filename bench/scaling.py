"""Issue 16's measurements: `serve --workers 2` against one worker, and the CPU cost of a long stream.

- **Scaling**: wrk at 64 connections on the one-worker proxy and the two-worker proxy, in
  interleaved rounds; the ratio of the median requests/s. The upstream (and wrk) are pinned to the
  machine's last core with `sched_setaffinity` for the measurement (restored after), and with 3 cores
  or more the proxy's workers to the others; with 2 cores the workers are not pinned and share the
  last core with them, which `method` says in the results.
- **Long streams**: streams of 1,000 small events, one every `interval_ms` per stream (the upstream
  writes each event on its own), `concurrency` at a time; the target's CPU time (its whole process
  tree, from /proc) divided by the events its client received, for the proxy and the bare aiohttp
  forwarder, interleaved round by round.

Each run is bounded in count and time; nothing here starts or stops a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.client import Connection, chat_body
from bench.measure import log, median, rotations
from bench.targets import MODEL, Target
from bench.wrk import run_wrk


def process_tree(pid: int) -> list[int]:
    """`pid` and every descendant, from /proc/PID/task/*/children."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in task.read_text().split())
    return found


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants so far (exited ones excepted)."""
    total = 0.0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def pinned(pids: Sequence[int], cpus: set[int]) -> Iterator[None]:
    """Every process (and thread) of each tree in `pids` on `cpus` while inside; restored after."""
    saved: dict[int, set[int]] = {}
    for root in pids:
        for member in process_tree(root):
            for task in (int(t.name) for t in Path(f"/proc/{member}/task").glob("*")):
                with contextlib.suppress(OSError):
                    saved[task] = os.sched_getaffinity(task)
                    os.sched_setaffinity(task, cpus)
    try:
        yield
    finally:
        for task, cpus_before in saved.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(task, cpus_before)


def scaling_plan() -> tuple[set[int] | None, set[int] | None, str]:
    """The cores of the upstream and wrk, those of the proxy's workers, and the method in words."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None, f"{len(cores)} core: nothing pinned; wrk -t1 -c64, rounds interleaved"
    last = cores[-1]
    if len(cores) >= 3:
        return {last}, set(cores[:-1]), (f"{len(cores)} cores; upstream and wrk pinned to core {last}, the proxy's "
                                         f"workers to cores {', '.join(map(str, cores[:-1]))}; wrk -t1 -c64, "
                                         "rounds interleaved")
    return {last}, None, (f"{len(cores)} cores; upstream and wrk pinned to core {last}, which the workers share "
                          "(only 2 cores; workers not pinned); wrk -t1 -c64, rounds interleaved")


def scaling(one: Target, two: Target, upstream: Target, *, rounds: int, seconds: float,
            connections: int = 64) -> dict[str, Any]:
    """Requests/s of the one-worker and the two-worker proxy, interleaved; CPU per request of each tree."""
    cpus, proxy_cpus, method = scaling_plan()
    runs: dict[str, list[dict[str, float]]] = {one.name: [], two.name: []}
    with (pinned([upstream.pid], cpus) if cpus else contextlib.nullcontext(),
          pinned([one.pid, two.pid], proxy_cpus) if proxy_cpus else contextlib.nullcontext()):
        for target in (one, two):  # warm-up: every worker's connection pool
            run_wrk(target.url, connections=connections, seconds=2, cpus=cpus)
        for r, order in enumerate(rotations([one, two], rounds)):
            for target in order:
                cpu = tree_cpu_seconds(target.pid)
                run = run_wrk(target.url, connections=connections, seconds=seconds, cpus=cpus)
                used = tree_cpu_seconds(target.pid) - cpu
                per_request_us = used / run.requests * 1e6 if run.requests else float("nan")
                runs[target.name].append({"rps": run.rps, "errors": run.errors, "cpu": used / run.duration_s,
                                          "cpu_us_per_request": per_request_us})
                log(f"scaling round {r + 1}/{rounds} {target.name}: {run.rps:,.0f} req/s, "
                    f"CPU {used / run.duration_s:.0%}, {per_request_us:.0f} us/request, {run.errors} errors")
    out: dict[str, Any] = {
        name: {"rps": median([x["rps"] for x in xs]), "errors": sum(x["errors"] for x in xs),
               "cpu": median([x["cpu"] for x in xs]),
               "cpu_us_per_request": median([x["cpu_us_per_request"] for x in xs]), "runs": xs}
        for name, xs in runs.items()
    }
    out["ratio"] = out[two.name]["rps"] / out[one.name]["rps"] if out[one.name]["rps"] else float("nan")
    out["round_ratios"] = [b["rps"] / a["rps"] for a, b in zip(runs[one.name], runs[two.name], strict=True)
                           if a["rps"]]
    out["method"] = method
    out["connections"] = connections
    return out


async def _stream_client(port: int, body: bytes, streams: int, tally: dict[str, int], token: str | None) -> None:
    conn = await Connection.open(port)
    try:
        for _ in range(streams):
            answer = await conn.post("/v1/chat/completions", body, token=token)
            tally["events"] += answer.events
            tally["streams"] += 1
            if answer.status != 200 or not answer.done or answer.error_event:
                tally["failed"] += 1
    finally:
        conn.close()


async def _long_round(target: Target, body: bytes, concurrency: int, per_client: int) -> dict[str, float]:
    tally = {"events": 0, "streams": 0, "failed": 0}
    cpu = tree_cpu_seconds(target.pid)
    started = time.monotonic()
    await asyncio.gather(*(_stream_client(target.port, body, per_client, tally, target.token)
                           for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    used = tree_cpu_seconds(target.pid) - cpu
    events = tally["events"]
    return {**tally, "seconds": elapsed, "cpu_s": used,
            "cpu_us_per_event": used / events * 1e6 if events else float("nan")}


def long_streams(targets: Sequence[Target], *, events: int = 1000, interval_ms: float = 1.0, concurrency: int = 8,
                 per_client: int = 2, rounds: int = 3) -> dict[str, Any]:
    """CPU per relayed event on streams of `events` small events, each target in turn, `rounds` times."""
    import uvloop

    body = chat_body(MODEL, stream=True, chunks=events, interval_ms=interval_ms)
    runs: dict[str, list[dict[str, float]]] = {t.name: [] for t in targets}
    for target in targets:  # warm-up: one stream each
        uvloop.run(_long_round(target, body, 1, 1))
    for r, order in enumerate(rotations(targets, rounds)):
        for target in order:
            result = uvloop.run(_long_round(target, body, concurrency, per_client))
            runs[target.name].append(result)
            log(f"long streams round {r + 1}/{rounds} {target.name}: {result['streams']:.0f} streams, "
                f"{result['events']:.0f} events in {result['seconds']:.1f} s, "
                f"{result['cpu_us_per_event']:.1f} us CPU/event, {result['failed']:.0f} failed")
    return {
        name: {"cpu_us_per_event": median([x["cpu_us_per_event"] for x in xs]),
               "events": sum(x["events"] for x in xs), "streams": sum(x["streams"] for x in xs),
               "failed": sum(x["failed"] for x in xs), "runs": xs,
               "settings": {"events": events, "interval_ms": interval_ms, "concurrency": concurrency,
                            "per_client": per_client}}
        for name, xs in runs.items()
    }
