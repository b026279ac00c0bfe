"""The last known catalog, kept where a proxy started while its database is unreachable finds it.

Two copies, each the JSON of `proxy.store.wire.CatalogSnapshot`, written whenever the catalog a proxy
loaded changed: a file in the data folder (`{data_dir}/catalog.json`, written whole to a temporary
file and renamed, so a reader never sees half of one; every worker of `serve --workers N` may write
it) and, with `REDIS_URL`, the Redis key `{prefix}:catalog` (shared by every instance; no TTL). At
start-up without a database `newest()` reads both and returns the one written last, of the same
database (a snapshot names the database it came from, so pointing a proxy at another database never
serves the first one's catalog). A copy that
cannot be written or read is logged once and otherwise ignored: it is a fallback, never a reason to fail.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import redis.asyncio as aioredis

from proxy.store.redis import REDIS_ERRORS
from proxy.store.wire import CatalogSnapshot, decode_catalog_snapshot, encode_catalog_snapshot

log = logging.getLogger("gatewayz.snapshot")
FILE_NAME = "catalog.json"
READ_TIMEOUT_S = 1.0


def snapshot_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir).expanduser() / FILE_NAME


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".catalog-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _content(snapshot: CatalogSnapshot) -> bytes:
    """What counts as a change: the offers and their statuses, not the latency averages (which move with
    every health flush: rewriting both copies every refresh for them would be I/O for nothing)."""
    steady = {m: [replace(o, response_time_ms=None) for o in found] for m, found in snapshot.offers.items()}
    return encode_catalog_snapshot(CatalogSnapshot(steady, snapshot.retired, 0.0, database=snapshot.database))


class CatalogSnapshots:
    def __init__(self, path: Path, redis: aioredis.Redis | None = None, key: str = "", database: str = "") -> None:
        self.path = path
        self.redis = redis
        self.key = key
        self.database = database  # the fingerprint of this process's database: only its snapshots are read
        self._written: dict[str, bytes] = {}  # copy ("disk", "redis") -> the bytes written last
        self._warned: set[str] = set()

    async def save(self, snapshot: CatalogSnapshot) -> None:
        """Write each copy whose content changed (the version alone does not count as a change)."""
        snapshot = replace(snapshot, database=self.database)
        data = encode_catalog_snapshot(snapshot)
        content = _content(snapshot)
        if self._written.get("disk") != content:
            try:
                await asyncio.to_thread(_write_file, self.path, data)
                self._written["disk"] = content
            except OSError as exc:
                self._warn("disk", f"cannot write the catalog snapshot {self.path}: {exc}")
        if self.redis is not None and self._written.get("redis") != content:
            try:
                await self.redis.set(self.key, data)
                self._written["redis"] = content
            except REDIS_ERRORS as exc:
                self._warn("redis", f"cannot write the catalog snapshot to redis ({self.key}): {exc}")

    async def newest(self) -> CatalogSnapshot | None:
        """The copy written last (disk or redis) from this process's database, or None when there is none."""
        copies = (await self._from_disk(), await self._from_redis())
        found = [s for s in copies if s is not None and s.database == self.database]
        return max(found, key=lambda s: s.version, default=None)

    async def _from_disk(self) -> CatalogSnapshot | None:
        try:
            data = await asyncio.to_thread(self.path.read_bytes)
            return decode_catalog_snapshot(data, "disk")
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self._warn("disk-read", f"ignoring the catalog snapshot {self.path}: {exc}")
            return None

    async def _from_redis(self) -> CatalogSnapshot | None:
        if self.redis is None:
            return None
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                data = await self.redis.get(self.key)
            return None if data is None else decode_catalog_snapshot(data, "redis")
        except (*REDIS_ERRORS, ValueError) as exc:
            self._warn("redis-read", f"ignoring the catalog snapshot in redis ({self.key}): {exc}")
            return None

    def _warn(self, copy: str, message: str) -> None:
        if copy not in self._warned:
            self._warned.add(copy)
            log.warning("%s", message)

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
