"""Plot a run's throughput and c=1 latency by target: `python bench/plot.py results.json results.png`.

Run with the bench environment's Python (matplotlib lives there, never in the project).
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SHORT = {
    "direct": "direct",
    "fwd-aiohttp": "fwd\naiohttp",
    "fwd-httpx-aiohttp": "fwd httpx\n+aiohttp",
    "fwd-httpx": "fwd\nhttpx",
    "proxy": "failover\nproxy",
    "litellm": "LiteLLM",
}


def main(source: str, target: str) -> None:
    with open(source) as f:
        r = json.load(f)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    tp = r.get("throughput", {})
    names = list(tp)
    colors = ["#d62728" if n == "proxy" else "#7f7f7f" if n == "direct" else "#1f77b4" for n in names]
    bars = left.bar([SHORT.get(n, n) for n in names], [tp[n]["rps"] for n in names], color=colors)
    left.bar_label(bars, labels=[f"{tp[n]['rps']:,.0f}" for n in names], fontsize=8)
    left.set_yscale("log")
    left.set_ylabel("requests/s (log scale)")
    left.set_title("Throughput, wrk -c32, non-streaming (median)")
    lat = r.get("latency_c1", {})
    names = list(lat)
    xs = range(len(names))
    p50 = [lat[n]["p50_ms"] for n in names]
    p99 = [lat[n]["p99_ms"] for n in names]
    right.bar([x - 0.2 for x in xs], p50, width=0.4, label="p50", color="#1f77b4")
    right.bar([x + 0.2 for x in xs], p99, width=0.4, label="p99", color="#ff7f0e")
    right.set_xticks(list(xs), [SHORT.get(n, n) for n in names])
    right.set_yscale("log")
    right.set_ylabel("ms (log scale)")
    right.set_title("Latency at concurrency 1 (median of runs)")
    right.legend()
    m = r["machine"]
    fig.suptitle(f"Gatewayz failover proxy bench: {m['nproc']} cores, {m['cpu']}, Python {m['python']}, "
                 f"{r['started']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
