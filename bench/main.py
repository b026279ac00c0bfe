"""`python -m bench`: start the targets, run every measurement, write the results.

Writes `bench/results.json` (figures and every repetition), `bench/RESULTS.md` and, with matplotlib
from the bench environment, `bench/results.png`. Logs of every process go to `bench/out/logs/`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import measure, scaling
from bench.procs import Processes
from bench.report import write_report
from bench.targets import ROOT, Bench, database_for_run, drop_database

BENCH = ROOT / "bench"
MEASUREMENTS = ("throughput", "latency", "ttfb", "failover", "streams", "scaling", "longstream")
CLIENTS = ("aiohttp", "httpx-aiohttp", "httpx")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Benchmark the failover proxy.")
    parser.add_argument("--only", default=",".join(MEASUREMENTS), help=f"comma-separated subset of {MEASUREMENTS}")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions of each wrk run (median reported)")
    parser.add_argument("--seconds", type=float, default=10, help="duration of each throughput run")
    parser.add_argument("--latency-seconds", type=float, default=5, help="duration of each c=1 run")
    parser.add_argument("--ttfb-samples", type=int, default=300)
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--stream-seconds", type=float, default=8)
    parser.add_argument("--stream-rounds", type=int, default=3, help="a plateau of peaks across rounds: bounded")
    parser.add_argument("--scaling-seconds", type=float, default=10, help="duration of each workers-scaling run")
    parser.add_argument("--long-events", type=int, default=1000, help="events per stream of the long-stream row")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="bare forwarders to run")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--litellm-venv", type=Path, default=BENCH / ".venv-litellm")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL",
                                                                 "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="server on which a throw-away database is made; '' for the embedded one")
    parser.add_argument("--profile", action="store_true", help="also record a py-spy profile of the proxy")
    parser.add_argument("--out", type=Path, default=BENCH / "out")
    parser.add_argument("--no-report", action="store_true", help="print figures, write no RESULTS.md/plot")
    return parser.parse_args(argv)


def machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "-"

    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return {
        "nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(), "kernel": platform.release(),
        "wrk": (wrk.stdout or wrk.stderr).split("\n", 1)[0].strip(),
        "packages": {n: version(n) for n in ("aiohttp", "httpx", "httpx-aiohttp", "uvicorn", "uvloop", "httptools")},
        "load_before": os.getloadavg(),
    }


def litellm_version(venv: Path) -> str | None:
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    done = subprocess.run([str(python), "-c", "from importlib.metadata import version; print(version('litellm'))"],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def profile_proxy(bench: Bench, out: Path, seconds: float) -> None:
    """py-spy on the proxy while wrk drives it: raw stacks, a flame graph and a text summary."""
    py_spy = BENCH / ".venv-bench" / "bin" / "py-spy"
    proxy = bench.targets["proxy"]
    with subprocess.Popen(["wrk", "-t1", "-c32", f"-d{seconds + 3:g}s", "-s", str(BENCH / "post.lua"), proxy.url],
                          stdout=subprocess.DEVNULL) as load:
        time.sleep(1)
        for fmt, name in (("raw", "profile.raw"), ("flamegraph", "profile.svg")):
            subprocess.run([str(py_spy), "record", "--pid", str(proxy.pid), "--duration", f"{seconds / 2:g}",
                            "--rate", "250", "--format", fmt, "-o", str(out / name)], check=True,
                           capture_output=True)
        load.wait(seconds + 30)
    summary = subprocess.run([sys.executable, "-m", "bench.profile_summary", str(out / "profile.raw"), "--top", "40"],
                             capture_output=True, text=True, check=True)
    (out / "profile.txt").write_text(summary.stdout)
    measure.log(f"profile written to {out}/profile.svg and profile.txt")


def run(args: argparse.Namespace, bench: Bench, results: dict[str, Any]) -> None:
    only = set(args.only.split(","))
    direct = bench.start_upstreams()
    forwarders = [bench.start_forwarder(c) for c in args.clients.split(",") if c]
    proxy = bench.start_proxy()
    litellm = None if args.no_litellm else bench.start_litellm(args.litellm_venv)
    wrk_targets = [direct, *forwarders, proxy] + ([litellm] if litellm else [])
    measure.log(f"targets: {', '.join(f'{t.name} (:{t.port}, pid {t.pid})' for t in wrk_targets)}")
    floor = [t for t in forwarders if t.name == "fwd-aiohttp"]
    if "throughput" in only:
        results["throughput"] = measure.throughput(wrk_targets, rounds=args.rounds, seconds=args.seconds)
    if "latency" in only:
        results["latency_c1"] = measure.latency_c1(wrk_targets, rounds=args.rounds, seconds=args.latency_seconds)
    if "ttfb" in only:
        results["ttfb"] = measure.ttfb([direct, *floor, proxy], samples=args.ttfb_samples)
    if "failover" in only:
        results["failover"] = measure.failover(proxy, rounds=3)
    if "streams" in only:
        results["streams"] = measure.slow_streams([direct, *floor, proxy], streams=args.streams,
                                                  seconds=args.stream_seconds, rounds=args.stream_rounds)
    if "longstream" in only and floor:
        results["long_streams"] = scaling.long_streams([floor[0], proxy], events=args.long_events,
                                                       rounds=args.rounds)
    if "scaling" in only:
        two = bench.start_proxy(workers=2)
        measure.log(f"target: {two.name} (:{two.port}, pid {two.pid})")
        results["scaling"] = scaling.scaling(proxy, two, direct, rounds=args.rounds, seconds=args.scaling_seconds)
    if args.profile:
        profile_proxy(bench, args.out, seconds=10)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    procs = Processes(args.out / "logs")
    name = f"gatewayz_bench_{os.getpid()}"
    database = database_for_run(args.database_url, name)
    started = time.time()
    results: dict[str, Any] = {"machine": machine(), "litellm": litellm_version(args.litellm_venv),
                               "command": "bench/run " + " ".join(sys.argv[1:] if argv is None else argv),
                               "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                               "settings": {k: str(v) for k, v in vars(args).items()}}
    try:
        run(args, Bench(procs, args.out, database), results)
    finally:
        procs.stop_all()
        if database:
            asyncio.run(drop_database(args.database_url, name))
    results["machine"]["load_after"] = os.getloadavg()
    results["elapsed_s"] = round(time.time() - started, 1)
    if args.no_report:
        print(json.dumps(results, indent=1, default=str))
        return 0
    (BENCH / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    write_report(results, BENCH / "RESULTS.md")
    plot = BENCH / ".venv-bench" / "bin" / "python"
    if plot.exists():
        subprocess.run([str(plot), str(BENCH / "plot.py"), str(BENCH / "results.json"), str(BENCH / "results.png")],
                       check=True)
    measure.log(f"done in {results['elapsed_s']:.0f} s: bench/RESULTS.md, bench/results.json, bench/results.png")
    return 0
