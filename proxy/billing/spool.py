"""The usage spool: records waiting on disk, in order, while Postgres cannot take them.

Each process appends to its own file in the data folder, `usage-spool.<pid>.jsonl` (one JSON object
a line, `proxy.billing.usage_record.spool_line`), so the workers of `serve --workers N` never write
to one file. A file is bounded (`max_bytes`): a batch that would grow it past the bound is dropped,
and the caller counts it (the only way a record is ever lost to an outage, and it is logged).

Draining reads this process's file and the files of processes that are gone (a crash, a kill -9, an
earlier run), oldest first; the caller writes them to Postgres (`ON CONFLICT DO NOTHING`: a file
written in part before a failure is written again without counting anything twice) and then
`remove`s each. A file of another live process is left to it. A torn last line (the process was
killed mid-append) is skipped: it was never acknowledged as written anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from proxy.billing.usage_record import UsageRecord, from_spool_line, spool_line
from proxy.processes import alive

log = logging.getLogger("gatewayz.usage")
PREFIX, SUFFIX = "usage-spool.", ".jsonl"


def spool_folder(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir).expanduser()


def _pid_of(path: Path) -> int | None:
    middle = path.name[len(PREFIX) : -len(SUFFIX)]
    return int(middle) if middle.isdigit() else None



class Spool:
    """This process's spool file in `folder`, bounded by `max_bytes`."""

    def __init__(self, folder: Path, max_bytes: int, *, pid: int | None = None) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.pid = os.getpid() if pid is None else pid
        self.path = folder / f"{PREFIX}{self.pid}{SUFFIX}"

    def append(self, records: list[UsageRecord]) -> int:
        """Append `records` in order; the number dropped because the file is full (0 or all of them).
        `OSError` when the folder cannot be written (the caller counts them dropped)."""
        if not records:
            return 0
        data = b"".join(spool_line(r) for r in records)
        size = self.path.stat().st_size if self.path.exists() else 0
        if size + len(data) > self.max_bytes:
            return len(records)
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as out:
            out.write(data)
            out.flush()
        return 0

    def files(self) -> list[Path]:
        """The files to drain: this process's and those of processes that are gone, oldest first."""
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.glob(f"{PREFIX}*{SUFFIX}"):
            pid = _pid_of(path)
            if pid is not None and (pid == self.pid or not alive(pid)):
                with contextlib.suppress(FileNotFoundError):
                    found.append((path.stat().st_mtime, path))
        return [path for _, path in sorted(found)]

    def __bool__(self) -> bool:
        return bool(self.files())

    @staticmethod
    def read(path: Path) -> list[UsageRecord]:
        """The records of one spool file, in the order they were appended (a torn line skipped)."""
        return list(_records(path.read_bytes()))

    @staticmethod
    def remove(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def find(self, request_id: str) -> UsageRecord | None:
        """The record of `request_id` in any spool file of the folder (every process's), else None."""
        needle = f'"request_id":"{request_id}"'.encode()
        if not self.folder.is_dir():
            return None
        for path in self.folder.glob(f"{PREFIX}*{SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                for line in path.read_bytes().splitlines():
                    if needle in line:
                        with contextlib.suppress(ValueError):
                            return from_spool_line(line)
        return None


def _records(data: bytes) -> Iterator[UsageRecord]:
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            yield from_spool_line(line)
        except ValueError:
            log.warning("usage spool: skipped a line that is not a whole record (a torn write)")
