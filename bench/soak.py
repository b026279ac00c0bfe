"""The soak: the real `failover serve` under steady load for a bounded few minutes while faults switch
on and off at random across three mock providers; it reports requests served, lost, and the proxy's
memory over time, and writes a "Soak" section into bench/RESULTS.md.

    python -m bench.soak                      # 3 minutes (the documented run)
    python -m bench.soak --minutes 1 --no-report

Every few seconds each provider draws a new state: healthy, or one fault of the mock's (5xx, 429 with
Retry-After, refused connections, a first byte slower than the proxy waits for, a stall, garbage, a
body cut before its end) hitting a share of its requests. One provider is always left healthy, and
stream faults strike before the first event, so every request is one that some provider could serve:
a lost request (no complete answer, a 5xx, a stream without [DONE]) is the proxy's fault, and the
count the run is judged by. Load and providers stay on 127.0.0.1; the run stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.procs import Processes, free_port, rss_mb, wait_http
from bench.targets import _clean_env, database_for_run, drop_database
from proxy.mock.testing import MockProvider

BENCH = Path(__file__).resolve().parent
SLUGS = ("alpha", "beta", "gamma")
MAX_MINUTES = 30.0
MAX_REQUESTS = 1_000_000
START, END = "<!-- soak:start -->", "<!-- soak:end -->"

CONFIG = """\
[proxy]
max_attempts = 3
deadline_s = 15
first_byte_timeout_s = 1
stream_idle_timeout_s = 5
circuit_failure_threshold = 3
circuit_cooldown_s = 2
default_cooldown_s = 1
{providers}
[[models]]
model_id = "gpt-4"
offers = [
{offers}
]
"""

FAULTS: list[dict[str, Any]] = [
    {"fault": "status", "status": 500},
    {"fault": "status", "status": 502},
    {"fault": "status", "status": 503, "retry_after": "1"},
    {"fault": "rate_limit", "retry_after": "1"},
    {"fault": "down"},
    {"fault": "slow_first_byte", "first_byte_ms": 3000},
    {"fault": "stall", "after_chunks": 0},
    {"fault": "garbage"},
    {"fault": "cut", "after_chunks": 0},
]


@dataclass
class Run:
    served: int = 0
    after_failover: int = 0
    lost: int = 0
    lost_examples: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    samples: list[dict[str, float]] = field(default_factory=list)
    fault_log: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return self.served + self.lost

    def lose(self, why: str) -> None:
        self.lost += 1
        if len(self.lost_examples) < 10:
            self.lost_examples.append(why[:300])


def config_text(mocks: dict[str, MockProvider]) -> str:
    providers = "".join(
        f'\n[[providers]]\nslug = "{s}"\nname = "{s.title()}"\nbase_url = "{m.url}"\n'
        f'api_key_env = "SOAK_{s.upper()}_KEY"\nlisting = "none"\n'
        for s, m in mocks.items()
    )
    offers = ",\n".join(f'  {{ provider = "{s}", provider_model_id = "{s}/gpt-4" }}' for s in mocks)
    return CONFIG.format(providers=providers, offers=offers)


async def one_request(session: aiohttp.ClientSession, url: str, rng: random.Random, run: Run) -> None:
    stream = rng.random() < 0.3
    body = {"model": "gpt-4", "messages": [{"role": "user", "content": "soak"}], "stream": stream}
    started = time.perf_counter()
    try:
        async with session.post(f"{url}/v1/chat/completions", json=body) as response:
            raw = await response.read()
            status, attempts = response.status, int(response.headers.get("x-gatewayz-attempts", "0"))
    except (aiohttp.ClientError, TimeoutError) as exc:
        run.lose(f"{type(exc).__name__}: {exc}")
        return
    run.statuses[status] += 1
    problem = _problem(status, raw, stream)
    if problem:
        run.lose(problem)
        return
    run.served += 1
    run.after_failover += attempts > 1
    run.latencies.append(time.perf_counter() - started)


def _problem(status: int, raw: bytes, stream: bool) -> str | None:
    if status != 200:
        return f"{status}: {raw[:200]!r}"
    if not stream:
        return None if b'"choices"' in raw else f"200 without choices: {raw[:200]!r}"
    events = [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]
    if not events or events[-1] != b"[DONE]" or any(e.startswith(b'{"error"') for e in events):
        return f"stream not complete: {events[-2:]!r}"
    return None


async def load(url: str, seconds: float, concurrency: int, seed: int, run: Run) -> None:
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as session:

        async def worker(index: int) -> None:
            rng = random.Random(seed * 1000 + index)
            while time.monotonic() < deadline and run.requests < MAX_REQUESTS:
                await one_request(session, url, rng, run)

        await asyncio.gather(*(worker(i) for i in range(concurrency)))


async def switch_faults(mocks: dict[str, MockProvider], seconds: float, period: float, seed: int, run: Run) -> None:
    """Every `period` s each provider gets a random state; one of them (a different one each time) stays healthy."""
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        spared = rng.choice(SLUGS)
        states = []
        for slug, mock in mocks.items():
            if slug == spared or rng.random() < 0.3:
                await asyncio.to_thread(mock.set_faults, fault="none")
                states.append(f"{slug}=ok")
                continue
            fault = rng.choice(FAULTS)
            rate = rng.choice([0.3, 0.7, 1.0])
            await asyncio.to_thread(mock.set_faults, **fault, fail_rate=rate, seed=rng.randrange(1 << 30))
            states.append(f"{slug}={fault['fault']}{fault.get('status', '')}@{rate:g}")
        run.fault_log.append(" ".join(states))
        await asyncio.sleep(min(period, max(0.0, deadline - time.monotonic())))
    for mock in mocks.values():
        await asyncio.to_thread(mock.set_faults, fault="none")


async def sample(pid: int, seconds: float, every: float, run: Run) -> None:
    started = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        run.samples.append({"t": round(elapsed), "rss_mb": round(rss_mb(pid), 1), "served": run.served,
                            "lost": run.lost})
        print(f"  t={elapsed:5.0f}s  rss={rss_mb(pid):6.1f} MB  served={run.served}  lost={run.lost}", flush=True)
        if elapsed >= seconds:
            return
        await asyncio.sleep(min(every, seconds - elapsed))


async def soak(url: str, pid: int, mocks: dict[str, MockProvider], args: argparse.Namespace) -> Run:
    run = Run()
    seconds = args.minutes * 60
    await asyncio.gather(
        load(url, seconds, args.concurrency, args.seed, run),
        switch_faults(mocks, seconds, args.period, args.seed, run),
        sample(pid, seconds, args.sample_every, run),
    )
    return run


def report(run: Run, args: argparse.Namespace, outcomes: dict[str, float], failovers: float, injected: int) -> str:
    seconds = args.minutes * 60
    rss = [s["rss_mb"] for s in run.samples]
    lat = sorted(run.latencies) or [0.0]
    every = max(1, len(run.samples) // 12)
    over_time = [f"| {s['t']:.0f} | {s['rss_mb']:.1f} | {s['served']:.0f} | {s['lost']:.0f} |"
                 for s in run.samples[::every]]
    if run.samples and run.samples[-1] not in run.samples[::every]:
        s = run.samples[-1]
        over_time.append(f"| {s['t']:.0f} | {s['rss_mb']:.1f} | {s['served']:.0f} | {s['lost']:.0f} |")
    five_xx = sum(n for status, n in run.statuses.items() if status >= 500)
    lines = [
        "## Soak",
        "",
        START,
        f"`python -m bench.soak --minutes {args.minutes:g}` on {datetime.date.today()}, {os.cpu_count()} cores: "
        f"`failover serve` (one worker) and three mock providers; every {args.period:g} s each provider draws a new "
        f"state (healthy, or one of {len(FAULTS)} faults on 30-100 % of its requests), one always healthy; "
        f"{args.concurrency} concurrent clients, 30 % of requests streamed.",
        "",
        "| | |",
        "|---|---|",
        f"| requests | {run.requests} ({run.requests / seconds:.0f}/s) |",
        f"| served (complete answer, stream ending in [DONE]) | {run.served} |",
        f"| **lost** (no answer, 5xx, broken stream) | **{run.lost}** |",
        f"| 5xx answers | {five_xx} |",
        f"| served after a failover (x-gatewayz-attempts > 1) | {run.after_failover} |",
        f"| latency p50 / p99 / max | {statistics.median(lat) * 1e3:.0f} / {lat[int(len(lat) * 0.99)] * 1e3:.0f} / "
        f"{lat[-1] * 1e3:.0f} ms |",
        f"| proxy RSS first / last / max | {rss[0]:.1f} / {rss[-1]:.1f} / {max(rss):.1f} MB |",
        f"| fault switches / faults the providers injected / failovers the proxy made | {len(run.fault_log)} / "
        f"{injected} / {failovers:.0f} |",
        f"| proxy's own count by outcome | {', '.join(f'{k} {v:.0f}' for k, v in sorted(outcomes.items()))} |",
        "",
        "Proxy memory over time:",
        "",
        "| t (s) | RSS (MB) | served | lost |",
        "|---|---|---|---|",
        *over_time,
    ]
    if run.lost_examples:
        lines += ["", "First lost requests:", "", *(f"- `{e}`" for e in run.lost_examples)]
    lines += ["", f"Fault states, first {min(5, len(run.fault_log))}: " + "; ".join(run.fault_log[:5]), END, ""]
    return "\n".join(lines)


def write_section(section: str, path: Path) -> None:
    """Put the soak section into RESULTS.md: replace an earlier one, or append; the rest is left alone."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if START in text and END in text:
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        head = head.rstrip()
        head = head.removesuffix("## Soak").rstrip()
        text = head + "\n\n" + tail.lstrip("\n")
    path.write_text(text.rstrip("\n") + "\n\n" + section)


def proxy_counts(url: str) -> tuple[dict[str, float], float]:
    """The proxy's own view: requests by outcome, and failovers, from its /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:  # loopback only
        text = response.read().decode()
    out: Counter[str] = Counter()
    failovers = 0.0
    for line in text.splitlines():
        if line.startswith("gatewayz_requests_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            out[outcome] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("gatewayz_failovers_total{"):
            failovers += float(line.rsplit(" ", 1)[1])
    return dict(out), failovers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="how long to run (at most 30)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--period", type=float, default=5.0, help="seconds between fault switches")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-report", action="store_true", help="print the section, do not write RESULTS.md")
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= MAX_MINUTES or not 1 <= args.concurrency <= 256:
        parser.error(f"--minutes must be in (0, {MAX_MINUTES:g}] and --concurrency in [1, 256]")
    work = Path(tempfile.mkdtemp(prefix="failover-soak-"))
    procs = Processes(work / "logs")
    mocks = {s: MockProvider(s, latency_ms=2, chunks=8, chunk_interval_ms=2).start() for s in SLUGS}
    db_name = f"failover_soak_{os.getpid()}"
    admin_url = os.environ.get("DATABASE_URL")
    database = database_for_run(admin_url, db_name)
    try:
        config = work / "soak.toml"
        config.write_text(config_text(mocks))
        env = _clean_env() | {f"SOAK_{s.upper()}_KEY": f"soak-key-{s}" for s in SLUGS}
        if database:
            env["DATABASE_URL"] = database
        else:
            env["FAILOVER_DATA_DIR"] = str(work / "failover-data")
        port = free_port()
        failover = str(Path(sys.executable).with_name("failover"))
        proxy = procs.start("proxy", [failover, "--config", str(config), "serve", "--port", str(port)], env)
        url = f"http://127.0.0.1:{port}"
        wait_http(proxy, f"{url}/readyz", 120)
        print(f"soak: {args.minutes:g} min against {url} (pid {proxy.pid}), logs in {work}", flush=True)
        run = asyncio.run(soak(url, proxy.pid, mocks, args))
        injected = sum(sum(m.stats()["faults_injected"].values()) for m in mocks.values())
        section = report(run, args, *proxy_counts(url), injected)
    finally:
        procs.stop_all()
        for mock in mocks.values():
            mock.stop()
        if database and admin_url:
            asyncio.run(drop_database(admin_url, db_name))
    print(section)
    (work / "soak.json").write_text(json.dumps({"samples": run.samples, "faults": run.fault_log,
                                                "lost": run.lost_examples}, indent=1))
    if not args.no_report:
        write_section(section, BENCH / "RESULTS.md")
        print("written to bench/RESULTS.md", flush=True)
    return 1 if run.lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
