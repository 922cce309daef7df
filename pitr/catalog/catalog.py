"""The LMDB catalog: the repository's files indexed by LSN, by time and by key.

Sub-databases (big-endian integer keys so LMDB's byte order is numeric order):
    segments   u64 first_lsn -> SegmentEntry (JSON)
    blocks     u64 block first_lsn -> BlockRow       (sparse LSN index)
    times      u64 block first_ts -> u64 block first_lsn   (time -> LSN)
    keys       u16 len | key | u64 ts -> u64 lsn, u8 kind, u8 flags   (audit)
    snapshots  u64 lsn -> SnapshotEntry (JSON)
    meta       format, store identity, watermark

The catalog is derived data: `Repository.reindex` rebuilds it from the files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

import lmdb

from pitr.catalog.entries import (
    KEY_FLAG_EXPIRY,
    KEY_VALUE,
    U64BE,
    BlockRow,
    KeyVersion,
    SegmentEntry,
    SnapshotEntry,
    key_prefix,
)
from pitr.errors import CorruptData
from segments import chain

FORMAT_VERSION = 1
MAP_SIZE = 1 << 40
KeyRow = tuple[bytes, int, int, int, bool]  # key, ts, lsn, kind, has_expiry


class Catalog:
    """One LMDB environment indexing one repository."""

    def __init__(self, path: str, *, readonly: bool = False) -> None:
        self.path = path
        os.makedirs(path, exist_ok=True)
        try:
            self.env = lmdb.open(path, map_size=MAP_SIZE, max_dbs=8, subdir=True, sync=True,
                                 metasync=False, readahead=False, max_readers=256, readonly=readonly)
        except lmdb.Error as exc:
            raise CorruptData(f"{path}: cannot open the catalog: {exc}", path=path,
                              hint="delete it and run `pitr reindex`") from exc
        c = not readonly
        self.segments_db = self.env.open_db(b"segments", create=c)
        self.blocks_db = self.env.open_db(b"blocks", create=c)
        self.times_db = self.env.open_db(b"times", create=c)
        self.keys_db = self.env.open_db(b"keys", create=c)
        self.snapshots_db = self.env.open_db(b"snapshots", create=c)
        self.gaps_db = self.env.open_db(b"gaps", create=c)
        self.meta_db = self.env.open_db(b"meta", create=c)
        if not readonly:
            with self.env.begin(write=True) as txn:
                raw = txn.get(b"format", db=self.meta_db)
                if raw is None:
                    txn.put(b"format", str(FORMAT_VERSION).encode(), db=self.meta_db)
                elif int(raw) != FORMAT_VERSION:
                    raise CorruptData(f"{path}: catalog format {raw.decode()} is not {FORMAT_VERSION}",
                                      path=path, hint="run `pitr reindex` to rebuild it")

    def close(self) -> None:
        self.env.close()

    # meta ------------------------------------------------------------------------
    def get_meta(self, name: str) -> Any:
        with self.env.begin(db=self.meta_db) as txn:
            raw = txn.get(name.encode())
        return None if raw is None else json.loads(raw)

    def set_meta(self, name: str, value: Any) -> None:
        with self.env.begin(write=True, db=self.meta_db) as txn:
            txn.put(name.encode(), json.dumps(value).encode())

    # segments --------------------------------------------------------------------
    def add_segment(self, entry: SegmentEntry, blocks: Iterable[BlockRow], key_rows: Iterable[KeyRow],
                    replaces: Iterable[int] = (), gaps: Iterable[tuple[int, int]] = ()) -> None:
        """Index a segment, its blocks and key versions in one transaction.

        `replaces` lists first LSNs of segments this one supersedes (merges): their
        rows go; key versions stay valid because they point at LSNs and times.
        """
        # Sorted by index key only: the sort is stable, so when a batch touches a key twice its last
        # operation comes last and wins the overwrite below.
        rows = sorted(((key_prefix(k) + U64BE.pack(ts), KEY_VALUE.pack(lsn, kind, KEY_FLAG_EXPIRY if exp else 0))
                       for k, ts, lsn, kind, exp in key_rows), key=lambda row: row[0])
        with self.env.begin(write=True) as txn:
            for first in replaces:
                self._drop_segment_rows(txn, first)
            txn.put(U64BE.pack(entry.first_lsn), entry.encode(), db=self.segments_db)
            for b in blocks:
                txn.put(U64BE.pack(b.first_lsn), b.encode(), db=self.blocks_db)
                txn.put(U64BE.pack(b.first_ts_ns), U64BE.pack(b.first_lsn), db=self.times_db)
            if rows:
                txn.cursor(self.keys_db).putmulti(rows, dupdata=False, overwrite=True)
            for lsn, ts_before in gaps:
                if ts_before < 0:  # the commit before the gap ends the previous segment
                    prev = self._segment_ending(txn, lsn - 1)
                    ts_before = prev.last_ts_ns if prev is not None else 0
                txn.put(U64BE.pack(lsn), U64BE.pack(ts_before), db=self.gaps_db)

    def _drop_segment_rows(self, txn: lmdb.Transaction, first_lsn: int) -> SegmentEntry | None:
        raw = txn.get(U64BE.pack(first_lsn), db=self.segments_db)
        if raw is None:
            return None
        entry = SegmentEntry.decode(bytes(raw))
        cursor = txn.cursor(self.blocks_db)
        if cursor.set_range(U64BE.pack(first_lsn)):
            while cursor.key():
                block_lsn = U64BE.unpack(cursor.key())[0]
                if block_lsn > entry.last_lsn:
                    break
                row = BlockRow.decode(block_lsn, bytes(cursor.value()))
                txn.delete(U64BE.pack(row.first_ts_ns), db=self.times_db)
                cursor.delete()  # moves to the next row
        txn.delete(U64BE.pack(first_lsn), db=self.segments_db)
        return entry

    def _segment_ending(self, txn: lmdb.Transaction, lsn: int) -> SegmentEntry | None:
        for _k, v in txn.cursor(self.segments_db):
            entry = SegmentEntry.decode(bytes(v))
            if entry.last_lsn == lsn:
                return entry
        return None

    def gaps(self) -> list[tuple[int, int]]:
        """(LSN, time of the commit before it) for every commit that follows a gap in the source."""
        with self.env.begin(db=self.gaps_db) as txn:
            return [(U64BE.unpack(k)[0], U64BE.unpack(v)[0]) for k, v in txn.cursor()]

    def remove_segment(self, first_lsn: int, key_rows: Iterable[KeyRow] = ()) -> None:
        """Forget a deleted segment and the key versions inside it."""
        with self.env.begin(write=True) as txn:
            self._drop_segment_rows(txn, first_lsn)
            for k, ts, lsn, _kind, _exp in key_rows:
                txn.delete(key_prefix(k) + U64BE.pack(ts), db=self.keys_db)
                txn.delete(U64BE.pack(lsn), db=self.gaps_db)

    def segments(self) -> list[SegmentEntry]:
        with self.env.begin(db=self.segments_db) as txn:
            return [SegmentEntry.decode(v) for _k, v in txn.cursor()]

    def segment_containing(self, lsn: int) -> SegmentEntry | None:
        """The segment whose LSN range holds `lsn` (O(log n))."""
        with self.env.begin(db=self.segments_db) as txn:
            cursor = txn.cursor()
            if cursor.set_range(U64BE.pack(lsn)) and U64BE.unpack(cursor.key())[0] == lsn:
                entry = SegmentEntry.decode(cursor.value())
            elif cursor.prev() if cursor.key() else cursor.last():
                entry = SegmentEntry.decode(cursor.value())
            else:
                return None
        return entry if entry.first_lsn <= lsn <= entry.last_lsn else None

    def segments_from(self, lsn: int) -> Iterator[SegmentEntry]:
        """Segments in LSN order, starting with the one containing `lsn` (or the next one)."""
        first = self.segment_containing(lsn)
        start = first.first_lsn if first is not None else lsn
        with self.env.begin(db=self.segments_db) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(U64BE.pack(start)):
                return
            rows = [SegmentEntry.decode(v) for _k, v in cursor]
        yield from rows

    def last_segment(self) -> SegmentEntry | None:
        with self.env.begin(db=self.segments_db) as txn:
            cursor = txn.cursor()
            return SegmentEntry.decode(cursor.value()) if cursor.last() else None

    def first_segment(self) -> SegmentEntry | None:
        with self.env.begin(db=self.segments_db) as txn:
            cursor = txn.cursor()
            return SegmentEntry.decode(cursor.value()) if cursor.first() else None

    def block_for_lsn(self, lsn: int) -> BlockRow | None:
        """The block holding `lsn` (O(log n))."""
        with self.env.begin(db=self.blocks_db) as txn:
            cursor = txn.cursor()
            if cursor.set_range(U64BE.pack(lsn)) and U64BE.unpack(cursor.key())[0] == lsn:
                pass
            elif not (cursor.prev() if cursor.key() else cursor.last()):
                return None
            return BlockRow.decode(U64BE.unpack(cursor.key())[0], cursor.value())

    def block_for_time(self, ts_ns: int) -> BlockRow | None:
        """The last block whose first commit time is <= ts_ns (O(log n))."""
        with self.env.begin() as txn:
            cursor = txn.cursor(self.times_db)
            key = U64BE.pack(max(ts_ns, 0))
            if cursor.set_range(key) and cursor.key() == key:
                pass
            elif not (cursor.prev() if cursor.key() else cursor.last()):
                return None
            first_lsn = U64BE.unpack(cursor.value())[0]
            raw = txn.get(U64BE.pack(first_lsn), db=self.blocks_db)
        return None if raw is None else BlockRow.decode(first_lsn, raw)

    def chain_digest_at(self, lsn: int, start_digest: bytes, first_lsn: int) -> bytes | None:
        """The log's chain digest right after `lsn`, if `lsn` ends a piece (None otherwise)."""
        if lsn == first_lsn - 1:
            return start_digest
        seg = self.segment_containing(lsn)
        if seg is None:
            # Retention may have removed the segment ending at `lsn`: the next one links to it.
            after = self.segment_containing(lsn + 1)
            return after.prev_chain_digest if after is not None and after.first_lsn == lsn + 1 else None
        digest = seg.prev_chain_digest
        for piece in seg.pieces:
            digest = chain.link(digest, piece)
            if piece.last_lsn == lsn:
                return digest
        return None

    # key index -------------------------------------------------------------------
    def key_versions(self, key: bytes, since_ns: int | None = None,
                     until_ns: int | None = None) -> Iterator[KeyVersion]:
        """Versions of `key` with since <= ts <= until, oldest first."""
        prefix = key_prefix(key)
        start = prefix + U64BE.pack(max(since_ns or 0, 0))
        with self.env.begin(db=self.keys_db) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(start):
                return
            for k, v in cursor:
                if not k.startswith(prefix) or len(k) != len(prefix) + 8:
                    break
                ts = U64BE.unpack_from(k, len(prefix))[0]
                if until_ns is not None and ts > until_ns:
                    break
                lsn, kind, flags = KEY_VALUE.unpack(v)
                yield KeyVersion(ts, lsn, kind, bool(flags & KEY_FLAG_EXPIRY))

    def key_version_at(self, key: bytes, ts_ns: int, *, inclusive: bool = True,
                       skip: int = 0) -> KeyVersion | None:
        """The newest version of `key` with ts <= ts_ns (< when exclusive), O(log n).

        `skip` steps further back (used when a long key's digest collides).
        """
        prefix = key_prefix(key)
        bound = ts_ns + 1 if inclusive else ts_ns
        with self.env.begin(db=self.keys_db) as txn:
            cursor = txn.cursor()
            if cursor.set_range(prefix + U64BE.pack(max(bound, 0))):
                found = cursor.prev()
            else:
                found = cursor.last()
            for _ in range(skip):
                if not found:
                    break
                found = cursor.prev()
            if not found:
                return None
            k = cursor.key()
            if not k.startswith(prefix) or len(k) != len(prefix) + 8:
                return None
            ts = U64BE.unpack_from(k, len(prefix))[0]
            lsn, kind, flags = KEY_VALUE.unpack(cursor.value())
        return KeyVersion(ts, lsn, kind, bool(flags & KEY_FLAG_EXPIRY))

    def keys_count(self) -> int:
        with self.env.begin() as txn:
            return int(txn.stat(self.keys_db)["entries"])

    # snapshots ---------------------------------------------------------------------
    def add_snapshot(self, entry: SnapshotEntry) -> None:
        with self.env.begin(write=True, db=self.snapshots_db) as txn:
            txn.put(U64BE.pack(entry.lsn), entry.encode())

    def remove_snapshot(self, lsn: int) -> None:
        with self.env.begin(write=True, db=self.snapshots_db) as txn:
            txn.delete(U64BE.pack(lsn))

    def snapshots(self) -> list[SnapshotEntry]:
        with self.env.begin(db=self.snapshots_db) as txn:
            return [SnapshotEntry.decode(v) for _k, v in txn.cursor()]

    def dump(self) -> dict[str, list[tuple[bytes, bytes]]]:
        """Every row of every sub-database (for comparing a reindexed catalog with a live one)."""
        out = {}
        with self.env.begin() as txn:
            for name, db in (("segments", self.segments_db), ("blocks", self.blocks_db),
                             ("times", self.times_db), ("keys", self.keys_db),
                             ("snapshots", self.snapshots_db), ("gaps", self.gaps_db)):
                out[name] = list(txn.cursor(db))
        return out

    def clear(self) -> None:
        with self.env.begin(write=True) as txn:
            for db in (self.segments_db, self.blocks_db, self.times_db, self.keys_db, self.snapshots_db,
                       self.gaps_db, self.meta_db):
                txn.drop(db, delete=False)
            txn.put(b"format", str(FORMAT_VERSION).encode(), db=self.meta_db)
