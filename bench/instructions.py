"""Instructions per request of the request path, in process, counted by valgrind: a figure that a
busy machine does not move (CPU time and requests/s do), for comparing two versions of the code.

Runs `python -m bench.instructions --run N` (the in-process request path of `bench.inproc`, N
requests) under `valgrind --tool=callgrind` twice, with `--few` and `--many` requests, and prints
(instructions(many) - instructions(few)) / (many - few): start-up and imports cancel out.

    python -m bench.instructions [--few 300] [--many 1300] [--source DIR] [--stream] [--records on|off]
    # needs valgrind (Debian package)

`--records on` gives the in-process gateway a usage writer (as a proxy with a database has), its
flusher not running: what a request pays for its usage record on the request path (building it, and
queuing it), with no database round trip. `off` (the default, as the bench gateway has no database).

`--source DIR` counts another checkout (e.g. `git archive main | tar -x -C /tmp/main`) with this
environment's interpreter. Bounded: two valgrind runs, about a minute each on an idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _with_records(gateway: Any) -> None:
    """The usage writer of a gateway with a database, without its flusher (no I/O is measured)."""
    import tempfile

    from proxy.billing.spool import Spool
    from proxy.billing.writer import UsageWriter
    from proxy.config import UsageSettings

    settings = UsageSettings(batch_size=10**9)  # the flusher does not run: the batch only grows
    spool = Spool(Path(tempfile.mkdtemp(prefix="bench-spool-")), 0)
    gateway.usage = UsageWriter(lambda: settings, lambda: None, spool, gateway.metrics)
    gateway.accounting.record_usage = gateway.usage.add


async def _requests(count: int, stream: bool, records: bool = False) -> None:
    from bench import inproc
    from proxy.http.handler import ProxyHandler

    gateway = inproc.gateway()
    if records:
        _with_records(gateway)
    handler = ProxyHandler(gateway)
    # the line is built, as under serve, and not written (before the request record, the handler wrote it)
    writer = getattr(gateway, "accounting", handler)
    writer.write_access = lambda line: None
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    body = inproc.STREAM_REQUEST if stream else inproc.REQUEST
    for _ in range(count):
        await inproc.one(handler, body, never)


def count(source: Path, requests: int, stream: bool = False, records: bool = False) -> int:
    """Instructions executed by one interpreter serving `requests` requests in process."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(source)}
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
            sys.executable, str(Path(__file__).resolve()), "--run", str(requests)]  # by path: `source` may lack it
    argv += ["--stream"] if stream else []
    argv += ["--records", "on"] if records else []
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=source, timeout=1800, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"valgrind printed no count (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--few", type=int, default=300)
    parser.add_argument("--many", type=int, default=1300)
    parser.add_argument("--source", type=Path, default=ROOT, help="the checkout to count (default: this one)")
    parser.add_argument("--stream", action="store_true", help="streamed requests (bench.inproc's events)")
    parser.add_argument("--records", choices=("on", "off"), default="off", help="usage records (see above)")
    parser.add_argument("--run", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run is not None:
        import uvloop

        from proxy.http.server import tune_gc

        tune_gc()
        uvloop.run(_requests(args.run, args.stream, args.records == "on"))
        return
    if args.many <= args.few:
        parser.error("--many must be larger than --few")
    records = args.records == "on"
    few = count(args.source, args.few, args.stream, records)
    many = count(args.source, args.many, args.stream, records)
    kind = "streamed" if args.stream else "non-streaming"
    print(f"{(many - few) / (args.many - args.few):,.0f} instructions per {kind} request, usage records "
          f"{args.records} ({args.source}, {args.many} - {args.few} requests)")


if __name__ == "__main__":
    main()
