"""Driving wrk: one bounded run against one URL, its figures read from `post.lua`'s JSON line."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("post.lua")
MARK = "BENCH_JSON "


@dataclass(frozen=True, slots=True)
class WrkRun:
    requests: int
    duration_s: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def run_wrk(
    url: str, *, connections: int, seconds: float, model: str = "bench-model", token: str | None = None,
    cpus: set[int] | None = None,
) -> WrkRun:
    """`wrk -t1 -c<connections> -d<seconds>s --latency` with the POST script; bounded by `seconds`.
    `cpus`: run wrk on those cores only (taskset)."""
    env = {**os.environ, "BENCH_MODEL": model}
    if token:
        env["BENCH_AUTH"] = token
    else:
        env.pop("BENCH_AUTH", None)
    argv = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "--latency",
        "-s", str(SCRIPT), url,
    ]
    if cpus:
        argv = ["taskset", "-c", ",".join(map(str, sorted(cpus))), *argv]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 60, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(MARK)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no figures (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(line[len(MARK) :])
    errors = sum(data[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return WrkRun(
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        errors=errors,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
    )
