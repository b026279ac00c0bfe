"""Rendering `bench/RESULTS.md` from a run's results: the figures, the SPEC section 11 targets as
ratios from this one run, the machine and the command."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

# The heading `python -m bench.hedge` writes its table under (kept across benchmark runs).
HEDGE_SECTION = "## Hedged requests (issue 17): one offer slow 10 % of the time, hedging off vs on"

LABELS = {
    "direct": "upstream, direct",
    "fwd-aiohttp": "bare forwarder, aiohttp",
    "fwd-httpx-aiohttp": "bare forwarder, httpx + httpx-aiohttp transport",
    "fwd-httpx": "bare forwarder, httpx default transport",
    "proxy": "**failover proxy** (`failover serve`, aiohttp)",
    "proxy-2w": "failover proxy, `serve --workers 2`",
    "litellm": "LiteLLM proxy",
}
STREAM_KIB_PER_STREAM = 64  # "bounded": the peak grows by at most this much per concurrent stream
THROUGHPUT_GOAL = 0.9  # x the bare aiohttp forwarder (issue 16; SPEC section 11 said 0.8)
P99_GOAL_MS = 1.0  # added p99 at c=1, in every round (issue 16)
SCALING_GOAL = 1.6  # two workers against one
EVENT_CPU_GOAL = 1.5  # proxy CPU per streamed event against the bare forwarder's


def _ms(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


def _target(name: str, ok: bool | None, figure: str, goal: str) -> str:
    verdict = "n/a" if ok is None else ("**met**" if ok else "**missed**")
    return f"| {name} | {figure} | {goal} | {verdict} |"


def _targets(r: dict[str, Any]) -> list[str]:
    rows = ["| target (SPEC section 11) | this run | goal | |", "|---|---|---|---|"]
    tp = r.get("throughput", {})
    if "proxy" in tp and "fwd-aiohttp" in tp:
        ratio = tp["proxy"]["rps"] / tp["fwd-aiohttp"]["rps"]
        rows.append(_target("throughput vs bare forwarder on the same client (aiohttp)", ratio >= THROUGHPUT_GOAL,
                            f"{ratio:.2f} x", f">= {THROUGHPUT_GOAL} x"))
    if "proxy" in tp and "litellm" in tp:
        ratio = tp["proxy"]["rps"] / tp["litellm"]["rps"]
        rows.append(_target("throughput vs LiteLLM (one worker each)", ratio >= 20, f"{ratio:.1f} x", ">= 20 x"))
    lat = r.get("latency_c1", {})
    if "proxy" in lat and "direct" in lat:
        p50 = lat["proxy"]["p50_ms"] - lat["direct"]["p50_ms"]
        p99 = lat["proxy"]["p99_ms"] - lat["direct"]["p99_ms"]
        rows.append(_target("added latency at concurrency 1, median", p50 <= 0.5, f"{p50:.3f} ms", "<= 0.5 ms"))
        rows.append(_target("added latency at concurrency 1, p99", p99 <= 2.0, f"{p99:.3f} ms", "<= 2 ms"))
        rounds = _added_p99_by_round(lat)
        if rounds:
            rows.append(_target("added p99 at concurrency 1, every round", max(rounds) <= P99_GOAL_MS,
                                " / ".join(f"{x:.3f}" for x in rounds) + " ms", f"<= {P99_GOAL_MS:g} ms in each"))
    tt = r.get("ttfb", {})
    if "proxy" in tt and "direct" in tt:
        added = tt["proxy"]["p50_ms"] - tt["direct"]["p50_ms"]
        rows.append(_target("added time to first streamed chunk, median", added <= 1.0, f"{added:.3f} ms", "<= 1 ms"))
    fo = r.get("failover", {})
    if "refused" in fo:
        added = fo["refused"]["added_p50_ms"]
        rows.append(_target("fail over from a refused connection, median", added <= 2.0, f"{added:.3f} ms", "<= 2 ms"))
    st = r.get("streams", {}).get("proxy")
    if st:
        growth = st["rss_peak_mb"] - st["rss_before_mb"]
        per_stream = growth * 1024 / max(1, int(r["settings"]["streams"]))
        peaks = st["rss_peaks_mb"]
        steady = all(later <= peaks[0] * 1.15 for later in peaks[1:])
        failed = st["failed"] + st["broken"] + st["connect_errors"]
        ok = per_stream <= STREAM_KIB_PER_STREAM and steady and not failed
        rows.append(_target(f"{r['settings']['streams']} concurrent slow streams, memory bounded", ok,
                            f"+{growth:.0f} MiB at peak ({per_stream:.0f} KiB/stream); peak by round "
                            f"{' / '.join(f'{p:.0f}' for p in peaks)} MiB; {failed} failed",
                            f"<= {STREAM_KIB_PER_STREAM} KiB/stream, later rounds peak <= 1.15 x the first, "
                            "no failed stream"))
    rows += _issue16_targets(r)
    return rows


def _added_p99_by_round(lat: dict[str, Any]) -> list[float]:
    """The proxy's p99 minus the direct upstream's, round by round (the rounds are interleaved)."""
    proxy, direct = lat["proxy"].get("runs", []), lat["direct"].get("runs", [])
    return [p["p99_ms"] - d["p99_ms"] for p, d in zip(proxy, direct, strict=False)]


def _issue16_targets(r: dict[str, Any]) -> list[str]:
    rows = []
    sc = r.get("scaling")
    if sc:
        rows.append(_target("`serve --workers 2` vs one worker, throughput", sc["ratio"] >= SCALING_GOAL,
                            f"{sc['ratio']:.2f} x", f">= {SCALING_GOAL} x"))
    ls = r.get("long_streams", {})
    if "proxy" in ls and "fwd-aiohttp" in ls:
        ratio = ls["proxy"]["cpu_us_per_event"] / ls["fwd-aiohttp"]["cpu_us_per_event"]
        rows.append(_target("CPU per streamed event (1,000-event streams) vs bare forwarder", ratio <= EVENT_CPU_GOAL,
                            f"{ratio:.2f} x", f"<= {EVENT_CPU_GOAL} x"))
    return rows


def _scaling(r: dict[str, Any]) -> list[str]:
    sc = r["scaling"]
    rows = [f"Method: {sc['method']}. Two workers / one worker by round: "
            f"{', '.join(f'{x:.2f}' for x in sc['round_ratios'])}; median requests/s ratio {sc['ratio']:.2f} x.", "",
            "| target | requests/s (median) | CPU (whole process tree) | CPU us/request | errors | runs |",
            "|---|---:|---:|---:|---:|---|"]
    for name, fig in sc.items():
        if not isinstance(fig, dict):
            continue
        runs = ", ".join(f"{x['rps']:,.0f}" for x in fig["runs"])
        rows.append(f"| {LABELS.get(name, name)} | {fig['rps']:,.0f} | {fig['cpu']:.0%} | "
                    f"{fig['cpu_us_per_request']:.0f} | {fig['errors']} | {runs} |")
    return rows


def _long_streams(r: dict[str, Any]) -> list[str]:
    ls = r["long_streams"]
    base = ls.get("fwd-aiohttp", {}).get("cpu_us_per_event")
    rows = ["| target | CPU us per event (median) | x bare aiohttp forwarder | events | streams | failed | runs |",
            "|---|---:|---:|---:|---:|---:|---|"]
    for name, fig in ls.items():
        runs = ", ".join(f"{x['cpu_us_per_event']:.1f}" for x in fig["runs"])
        ratio = f"{fig['cpu_us_per_event'] / base:.2f}" if base else "-"
        rows.append(f"| {LABELS.get(name, name)} | {fig['cpu_us_per_event']:.1f} | {ratio} | {fig['events']:,} | "
                    f"{fig['streams']} | {fig['failed']} | {runs} |")
    return rows


def _throughput(r: dict[str, Any]) -> list[str]:
    tp = r["throughput"]
    base = tp.get("fwd-aiohttp", {}).get("rps")
    rows = ["| target | requests/s (median) | x bare aiohttp forwarder | x LiteLLM | target CPU | errors | runs |",
            "|---|---:|---:|---:|---:|---:|---|"]
    litellm = tp.get("litellm", {}).get("rps")
    for name, fig in tp.items():
        runs = ", ".join(f"{x['rps']:,.0f}" for x in fig["runs"])
        vs_base = f"{fig['rps'] / base:.2f}" if base else "-"
        vs_litellm = f"{fig['rps'] / litellm:.1f}" if litellm else "-"
        rows.append(f"| {LABELS.get(name, name)} | {fig['rps']:,.0f} | {vs_base} | {vs_litellm} | "
                    f"{fig['cpu']:.0%} | {fig['errors']} | {runs} |")
    return rows


def _latency(r: dict[str, Any]) -> list[str]:
    lat = r["latency_c1"]
    direct = lat.get("direct", {})
    rows = ["| target | p50 ms | p99 ms | added p50 ms | added p99 ms | p99 ms by round |",
            "|---|---:|---:|---:|---:|---|"]
    for name, fig in lat.items():
        added50 = fig["p50_ms"] - direct["p50_ms"] if direct else float("nan")
        added99 = fig["p99_ms"] - direct["p99_ms"] if direct else float("nan")
        by_round = " / ".join(_ms(x["p99_ms"]) for x in fig.get("runs", []))
        rows.append(f"| {LABELS.get(name, name)} | {_ms(fig['p50_ms'])} | {_ms(fig['p99_ms'])} | "
                    f"{_ms(added50)} | {_ms(added99)} | {by_round} |")
    return rows


def _ttfb(r: dict[str, Any]) -> list[str]:
    tt = r["ttfb"]
    direct = tt.get("direct", {})
    rows = ["| target | p50 ms | p99 ms | added p50 ms | samples |", "|---|---:|---:|---:|---:|"]
    for name, fig in tt.items():
        added = fig["p50_ms"] - direct["p50_ms"] if direct else float("nan")
        rows.append(f"| {LABELS.get(name, name)} | {_ms(fig['p50_ms'])} | {_ms(fig['p99_ms'])} | {_ms(added)} | "
                    f"{fig['samples']} |")
    return rows


def _failover(r: dict[str, Any]) -> list[str]:
    fo = r["failover"]
    names = {"healthy": "healthy single offer", "refused": "first offer refuses the connection",
             "status_500": "first offer answers 500"}
    rows = ["| proxy request | p50 ms | p99 ms | failover cost (p50 - healthy p50) | samples |",
            "|---|---:|---:|---:|---:|"]
    for kind, fig in fo.items():
        added = _ms(fig["added_p50_ms"]) if "added_p50_ms" in fig else "-"
        rows.append(f"| {names.get(kind, kind)} | {_ms(fig['p50_ms'])} | {_ms(fig['p99_ms'])} | {added} | "
                    f"{fig['samples']} |")
    return rows


def _streams(r: dict[str, Any]) -> list[str]:
    rows = ["| target | streams done | streams/s (of ideal) | events/s | failed | RSS before | RSS peak by round "
            "| RSS 2 s after |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, fig in r["streams"].items():
        failed = fig["failed"] + fig["broken"] + fig["connect_errors"]
        peaks = " / ".join(f"{p:.0f}" for p in fig["rss_peaks_mb"])
        rows.append(f"| {LABELS.get(name, name)} | {fig['streams']:,} | {fig['streams_per_s']:,.0f} "
                    f"({fig['streams_per_s'] / fig['ideal_streams_per_s']:.0%}) | "
                    f"{fig['events_per_s']:,.0f} | {failed} | {fig['rss_before_mb']:.0f} MiB | "
                    f"{peaks} MiB | {fig['rss_after_mb']:.0f} MiB |")
    return rows


def write_report(r: dict[str, Any], path: Path) -> None:
    m = r["machine"]
    s = r["settings"]
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    lines = [
        "# Benchmark results",
        "",
        "Written by `bench/run` (see [README.md](README.md) for what each figure means and how it is taken).",
        f"Taken {r['started']} in {r['elapsed_s']:.0f} s with `{r['command'].strip()}`.",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), Linux {m['kernel']}, Python {m['python']}, {m['wrk']}; "
        f"{packages}; LiteLLM {r.get('litellm') or 'not installed'}. Load average before/after: "
        f"{m['load_before'][0]:.2f} / {m['load_after'][0]:.2f} (the machine is shared: targets are interleaved "
        "and figures are medians, so compare ratios, not absolute numbers).",
        "",
        "![throughput and latency by target](results.png)",
        "",
        "## Targets",
        "",
        *_targets(r),
    ]
    if "throughput" in r:
        lines += ["", f"## Throughput: wrk -t1 -c32 -d{s['seconds']}s, non-streaming POST, "
                  f"median of {s['rounds']} rounds", "", *_throughput(r)]
    if "latency_c1" in r:
        lines += ["", f"## Latency at concurrency 1: wrk -t1 -c1 -d{s['latency_seconds']}s, "
                  f"median of {s['rounds']} rounds", "", *_latency(r)]
    if "ttfb" in r:
        lines += ["", "## Time to first streamed chunk (request written -> first body byte), request by request",
                  "", *_ttfb(r)]
    if "failover" in r:
        lines += ["", "## Failover: proxy request latency, sequential, interleaved by kind", "", *_failover(r)]
    if "streams" in r:
        lines += ["", f"## {s['streams']} concurrent slow streams (a chunk every 100 ms, 10 chunks), "
                  f"~{s['stream_seconds']} s per round, {s['stream_rounds']} rounds, one worker", "", *_streams(r)]
    if "long_streams" in r:
        st = next(iter(r["long_streams"].values()))["settings"]
        lines += ["", f"## Long streams: {st['events']} small events per stream, one every {st['interval_ms']:g} ms, "
                  f"{st['concurrency']} at a time, {st['per_client']} per connection, {s['rounds']} rounds; "
                  "CPU of the target's process tree / events received", "", *_long_streams(r)]
    if "scaling" in r:
        lines += ["", f"## Scaling: `serve --workers 2` against one worker, wrk -t1 -c{r['scaling']['connections']} "
                  f"-d{s.get('scaling_seconds', '10')}s, median of {s['rounds']} rounds", "", *_scaling(r)]
    lines += ["", "The profile of the request path, and what was changed because of it: [PROFILE.md](PROFILE.md).",
              ""]
    path.write_text("\n".join(lines) + _kept_sections(path))


def _kept_sections(path: Path) -> str:
    """The sections other scripts wrote into the file (`python -m bench.soak`'s "Soak", then
    `python -m bench.hedge`'s hedging table), kept across benchmark runs: from the first of them on."""
    text = path.read_text() if path.exists() else ""
    starts = [i for i in (text.find("## Soak\n\n<!-- soak:start -->"), text.find(HEDGE_SECTION)) if i >= 0]
    return "\n" + text[min(starts) :].rstrip("\n") + "\n" if starts else ""
    start, end = text.find("## Soak\n\n<!-- soak:start -->"), text.find("<!-- soak:end -->")
    return "\n" + text[start : end + len("<!-- soak:end -->")] + "\n" if 0 <= start < end else ""
