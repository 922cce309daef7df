"""The etcd archiver's spool directory: its marker file, reading its state in key order, and
finding the etcd revision of its last commit (in the WAL, or in a repository once the WAL is gone)."""

from __future__ import annotations

import base64
import json
import os
from contextlib import closing
from itertools import islice

import anyio

from pitr.datadir.state import StateDB
from pitr.datadir.wal import WalDirectory
from pitr.errors import CorruptData, InvalidArgument
from pitr.repo import layout
from pitr.repo.repository import Repository
from segments import record as rec
from segments.fsutil import publish_atomically

from ._gateway import prefix_range_end

SPOOL_MARKER = "etcd-source.json"


def default_spool_dir(prefix: bytes, repo_url: str) -> str:
    """The spool used when none is given: one per (prefix, first repository), in the user's cache.

    It is not derived from the member list, which changes when members are replaced.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pitr", "etcd-spool-" + layout.repo_key(repr((prefix, repo_url))))


def spool_phase(spool_dir: str, prefix: bytes, last_lsn: int) -> str | None:
    """Whether the spool is "syncing" (a base load or resync was not finished) or "following";
    None for a new spool. Refuses a spool of another prefix and a store that is not a spool."""
    path = os.path.join(spool_dir, SPOOL_MARKER)
    try:
        with open(path, "rb") as fh:
            doc = json.load(fh)
        found, phase = base64.b64decode(doc["prefix"]), str(doc["phase"])
    except FileNotFoundError:
        if last_lsn > 0:
            raise InvalidArgument(f"{spool_dir} holds a pitr store that is not an etcd spool; give another "
                                  "spool directory (--data)") from None
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptData(f"{path}: unreadable spool marker: {exc}", path=path,
                          hint="remove the spool directory and archive into a new repository") from exc
    if found != prefix:
        raise InvalidArgument(f"{spool_dir} is the spool of etcd prefix {found!r}, not {prefix!r}; give another "
                              "spool directory (--data)")
    return phase


def write_spool_marker(spool_dir: str, prefix: bytes, phase: str, reason: str) -> None:
    """Record (atomically) which prefix the spool follows and whether a base load is under way."""
    data = json.dumps({"version": 1, "source": "etcd", "prefix": base64.b64encode(prefix).decode(),
                       "phase": phase, "reason": reason}).encode()
    publish_atomically(os.path.join(spool_dir, SPOOL_MARKER), lambda fh: fh.write(data), overwrite=True)


class SpoolCursor:
    """The spool's entries under a prefix in key order, read from LMDB a chunk at a time."""

    CHUNK = 1000

    def __init__(self, state: StateDB, prefix: bytes) -> None:
        self._state = state
        self._prefix = prefix
        end = prefix_range_end(prefix)
        self._stop = None if end == b"\0" else end
        self._next: bytes | None = prefix
        self._rows: list[tuple[bytes, bytes, int | None]] = []
        self._index = 0

    async def peek(self) -> tuple[bytes, bytes, int | None] | None:
        if self._index >= len(self._rows):
            if self._next is None:
                return None
            self._rows = await anyio.to_thread.run_sync(self._read, self._next)
            self._index = 0
            self._next = self._rows[-1][0] + b"\0" if len(self._rows) == self.CHUNK else None
            if not self._rows:
                return None
        return self._rows[self._index]

    def advance(self) -> None:
        self._index += 1

    def _read(self, start: bytes) -> list[tuple[bytes, bytes, int | None]]:
        with self._state.read_view() as view, closing(view.rows(start, self._stop)) as rows:
            return list(islice(rows, self.CHUNK))


async def source_revision_at(repo: Repository, lsn: int) -> int | None:
    """The etcd revision recorded with the archived commit at `lsn`, if the repository holds it."""
    segment = repo.catalog.segment_containing(lsn)
    block = repo.catalog.block_for_lsn(lsn)
    if segment is None or block is None:
        return None
    raw = await repo.read_block(segment, block)
    for span in rec.scan_spans(raw):
        if span.lsn == lsn:
            record = rec.decode_payload(raw, span, skip_unknown=True)
            return None if record is None else record.source_rev
    return None


def wal_source_revision(wal_path: str, lsn: int) -> int | None:
    """The source revision of the WAL record at `lsn`, or None when the WAL no longer holds it."""
    if lsn < 1:
        return None
    try:
        for data, spans in WalDirectory(wal_path).read_after(lsn - 1, lsn, 1 << 20):
            for span in spans:
                if span.lsn == lsn:
                    record = rec.decode_payload(data, span, skip_unknown=True)
                    return None if record is None else record.source_rev
    except CorruptData:
        return None
    return None
