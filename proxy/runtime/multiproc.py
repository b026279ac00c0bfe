"""Prometheus multiprocess mode (`serve --workers N`): the folder every worker writes its values to.

Each worker writes memory-mapped files named by its pid (`counter_1234.db`, `gauge_livemax_1234.db`).
Two rules keep the aggregated `/metrics` honest:
- the folder is emptied when `serve` starts, so nothing of an earlier run is counted again (an
  operator-set `PROMETHEUS_MULTIPROC_DIR` too: `serve` owns that folder while it runs);
- the proxy's gauges use `live*` modes, and before each aggregation the gauge files of workers
  that are gone (a crash, a `kill -9`, uvicorn's replacement of a hung worker) are removed, so a
  dead worker's "circuit open" does not linger. Counters of dead workers stay: what they counted
  happened.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead

from proxy.processes import alive

ENV = "PROMETHEUS_MULTIPROC_DIR"
LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def empty_folder(folder: str | os.PathLike[str]) -> int:
    """Remove the metric files (`*.db`) an earlier run left in `folder`; return how many went."""
    removed = 0
    for path in Path(folder).glob("*.db"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed


def forget_dead_workers(folder: str | os.PathLike[str]) -> list[int]:
    """Remove the live-mode gauge files of processes that no longer run; return their pids."""
    dead = set()
    for name in os.listdir(folder):
        found = LIVE_GAUGE_FILE.match(name)
        if found is not None and not alive(int(found.group(1))):
            dead.add(int(found.group(1)))
    for pid in dead:
        mark_process_dead(pid, str(folder))  # type: ignore[no-untyped-call]
    return sorted(dead)

