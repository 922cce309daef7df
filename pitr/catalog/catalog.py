"""The LMDB catalog: the repository's files indexed by LSN, by time and by key.

Sub-databases (big-endian integer keys so LMDB's byte order is numeric order);
every value ends with a CRC-32C over sub-database, key and payload
(`pitr.catalog.rows`, specified in docs/format.md "Catalog"):
    segments   u64 first_lsn -> SegmentEntry (JSON)
    blocks     u64 block first_lsn -> BlockRow       (sparse LSN index)
    times      u64 block first_ts -> u64 block first_lsn   (time -> LSN)
    keytables  u64 segment first_lsn -> its key table's LSN range, times, entries  (`pitr.catalog.keyindex`)
    keychunks  u64 segment first_lsn | first entry -> up to 163 key-index entries (`pitr.catalog.keytable`)
    snapshots  u64 lsn -> SnapshotEntry (JSON)
    gaps       u64 lsn -> u64 time of the commit before it (commits after a loss of source history)
    files      file name -> FileCheck (JSON): files that could not be indexed, verify results
    meta       format, store identity, watermark (JSON)

The catalog is derived data: `Repository.reindex` rebuilds it from the files.
A catalog that cannot be opened or read raises `CatalogDamaged` (hint:
`pitr reindex`); no LMDB error leaves this module untranslated.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import lmdb

from pitr.catalog.entries import U64BE, BlockRow, FileCheck, SegmentEntry, SnapshotEntry
from pitr.catalog.environment import DB_NAMES, FORMAT_VERSION, Raw
from pitr.catalog.keyindex import INDEX_KEY_ID, KeyIndex, KeyTable, index_key_id
from pitr.catalog.keytable import ChunkRow, KeyRow, build_table
from pitr.catalog.rows import dump_json, load_json
from pitr.errors import CatalogDamaged
from pitr.jsontypes import JSONValue
from segments import chain


def _u64(raw: bytes) -> int:
    if len(raw) != 8:
        raise ValueError(f"an 8-byte integer has {len(raw)} bytes")
    return int(U64BE.unpack(raw)[0])


def _decode_u64(raw: bytes) -> int:
    return _u64(raw)


class Catalog(KeyIndex):
    """One LMDB environment indexing one repository (see the module docstring for its rows)."""

    # meta ------------------------------------------------------------------------
    def get_meta(self, name: str) -> JSONValue:
        with self._txn("read") as txn:
            return self._get(txn, b"meta", name.encode(), load_json)

    def set_meta(self, name: str, value: object) -> None:
        with self._txn("write", write=True) as txn:
            self._put(txn, b"meta", name.encode(), dump_json(value))

    def watermark(self) -> tuple[int, int] | None:
        """The indexed watermark (LSN, complete-through time), checked for shape."""
        value = self.get_meta("watermark")
        if value is None:
            return None
        lsn, ts = value if isinstance(value, list) and len(value) == 2 else (None, None)
        if not (type(lsn) is int and type(ts) is int and 0 <= lsn < 1 << 64 and 0 <= ts < 1 << 64):
            raise CatalogDamaged("catalog row meta/watermark is not [LSN, time]", path=self.path)
        return lsn, ts

    # segments --------------------------------------------------------------------
    def add_segment(self, entry: SegmentEntry, blocks: Iterable[BlockRow], key_rows: Iterable[KeyRow],
                    replaces: Iterable[int] = (), gaps: Iterable[tuple[int, int]] = ()) -> None:
        """Index a segment, its blocks and its key table (built from `key_rows`) in one transaction.

        `replaces` lists first LSNs of segments this one supersedes: their rows go,
        their key tables with them.
        """
        count, rows = build_table(entry.first_lsn, key_rows, self.index_key)
        self.add_segment_indexed(entry, blocks, (count, rows), replaces, gaps)

    def add_segment_indexed(self, entry: SegmentEntry, blocks: Iterable[BlockRow],
                            key_table: tuple[int, list[ChunkRow]] | None, replaces: Iterable[int] = (),
                            gaps: Iterable[tuple[int, int]] = ()) -> None:
        """`add_segment` with the key table already built by `build_table` (which a sealing
        process can run: what is left here is LMDB's own loop). With `key_table` None (a merge of
        `replaces`), the replaced segments' tables are merged into this segment's."""
        with self._txn("index a segment into", write=True) as txn:
            for first in replaces:
                self._drop_segment_rows(txn, first)
            self._put(txn, b"segments", U64BE.pack(entry.first_lsn), entry.encode())
            for b in blocks:
                self._put(txn, b"blocks", U64BE.pack(b.first_lsn), b.encode())
                self._put(txn, b"times", U64BE.pack(b.first_ts_ns), U64BE.pack(b.first_lsn))
            if key_table is None:
                self._merge_key_tables(txn, entry)
            else:
                self._put_key_table(txn, entry, *key_table)
            for lsn, ts_before in gaps:
                if ts_before < 0:  # the commit before the gap ends the previous segment
                    prev = self._segment_ending(txn, lsn - 1)
                    ts_before = prev.last_ts_ns if prev is not None else 0
                self._put(txn, b"gaps", U64BE.pack(lsn), U64BE.pack(ts_before))
            txn.delete(entry.name.encode(), db=self.files_db)

    def _drop_segment_rows(self, txn: lmdb.Transaction, first_lsn: int) -> SegmentEntry | None:
        entry = self._get(txn, b"segments", U64BE.pack(first_lsn), SegmentEntry.decode)
        if entry is None:
            return None
        cursor = txn.cursor(self.blocks_db)
        if cursor.set_range(U64BE.pack(first_lsn)):
            while cursor.key():
                key = bytes(cursor.key())
                if self._key(b"blocks", key) > entry.last_lsn:
                    break
                row = self._block(txn, key, cursor.value())
                txn.delete(U64BE.pack(row.first_ts_ns), db=self.times_db)
                cursor.delete()  # moves to the next row
        txn.delete(U64BE.pack(first_lsn), db=self.segments_db)
        txn.delete(entry.name.encode(), db=self.files_db)
        return entry

    def _segment_ending(self, txn: lmdb.Transaction, lsn: int) -> SegmentEntry | None:
        for k, v in txn.cursor(self.segments_db):
            entry = self._decode(b"segments", k, v, SegmentEntry.decode)
            if entry.last_lsn == lsn:
                return entry
        return None

    def gaps(self) -> list[tuple[int, int]]:
        """(LSN, time of the commit before it) for every commit that follows a gap in the source."""
        return [(self._key(b"gaps", k), ts) for k, ts in self._rows(b"gaps", _decode_u64)]

    def remove_segment(self, first_lsn: int, key_rows: Iterable[KeyRow] | None = None) -> None:
        """Forget a deleted segment, its key table and the gap rows inside it.

        `key_rows` is accepted for callers that read the file first; the key table goes
        whole (one range of rows), so it is not needed.
        """
        with self._txn("remove a segment from", write=True) as txn:
            entry = self._drop_segment_rows(txn, first_lsn)
            if entry is not None:
                self._drop_key_tables(txn, entry.first_lsn, entry.last_lsn)
                cursor = txn.cursor(self.gaps_db)
                found = cursor.set_range(U64BE.pack(entry.first_lsn))
                while found and self._key(b"gaps", bytes(cursor.key())) <= entry.last_lsn:
                    found = cursor.delete() and bool(cursor.key())  # past the last row, the cursor is unset

    def segments(self) -> list[SegmentEntry]:
        return [entry for _k, entry in self._rows(b"segments", SegmentEntry.decode)]

    def segment_containing(self, lsn: int) -> SegmentEntry | None:
        """The segment whose LSN range holds `lsn` (O(log n))."""
        with self._txn("read") as txn:
            cursor = txn.cursor(self.segments_db)
            if cursor.set_range(U64BE.pack(lsn)) and bytes(cursor.key()) == U64BE.pack(lsn):
                pass
            elif not (cursor.prev() if cursor.key() else cursor.last()):
                return None
            entry = self._decode(b"segments", cursor.key(), cursor.value(), SegmentEntry.decode)
        return entry if entry.first_lsn <= lsn <= entry.last_lsn else None

    def segments_from(self, lsn: int) -> Iterator[SegmentEntry]:
        """Segments in LSN order, starting with the one containing `lsn` (or the next one)."""
        first = self.segment_containing(lsn)
        start = first.first_lsn if first is not None else lsn
        with self._txn("read") as txn:
            cursor = txn.cursor(self.segments_db)
            if not cursor.set_range(U64BE.pack(start)):
                return
            rows = [self._decode(b"segments", k, v, SegmentEntry.decode) for k, v in cursor]
        yield from rows

    def _end_segment(self, last: bool) -> SegmentEntry | None:
        with self._txn("read") as txn:
            cursor = txn.cursor(self.segments_db)
            if not (cursor.last() if last else cursor.first()):
                return None
            return self._decode(b"segments", cursor.key(), cursor.value(), SegmentEntry.decode)

    def last_segment(self) -> SegmentEntry | None:
        return self._end_segment(True)

    def first_segment(self) -> SegmentEntry | None:
        return self._end_segment(False)

    def _block(self, txn: lmdb.Transaction, key: Raw, raw: Raw) -> BlockRow:
        first_lsn = self._key(b"blocks", key)
        return self._decode(b"blocks", key, raw, lambda p: BlockRow.decode(first_lsn, p))

    def block_for_lsn(self, lsn: int) -> BlockRow | None:
        """The block holding `lsn` (O(log n))."""
        with self._txn("read") as txn:
            cursor = txn.cursor(self.blocks_db)
            if cursor.set_range(U64BE.pack(lsn)) and bytes(cursor.key()) == U64BE.pack(lsn):
                pass
            elif not (cursor.prev() if cursor.key() else cursor.last()):
                return None
            return self._block(txn, bytes(cursor.key()), cursor.value())

    def blocks_for_lsns(self, lsns: Sequence[int]) -> list[BlockRow | None]:
        """`block_for_lsn` of each of `lsns`, in one read transaction (O(log n) each; a run of LSNs in
        one block is looked up once). A history of a key spread over a long log asks thousands at once:
        one transaction per LSN cost 85 us each on a cold page cache."""
        found: list[BlockRow | None] = []
        last: BlockRow | None = None
        with self._txn("read") as txn:
            cursor = txn.cursor(self.blocks_db)
            for lsn in lsns:
                if last is None or not last.first_lsn <= lsn < last.first_lsn + last.record_count:
                    key = U64BE.pack(lsn)
                    if cursor.set_range(key) and bytes(cursor.key()) == key:
                        pass
                    elif not (cursor.prev() if cursor.key() else cursor.last()):
                        found.append(None)
                        continue
                    last = self._block(txn, bytes(cursor.key()), cursor.value())
                found.append(last)
        return found

    def block_for_time(self, ts_ns: int) -> BlockRow | None:
        """The last block whose first commit time is <= ts_ns (O(log n))."""
        with self._txn("read") as txn:
            cursor = txn.cursor(self.times_db)
            key = U64BE.pack(max(ts_ns, 0))
            if cursor.set_range(key) and bytes(cursor.key()) == key:
                pass
            elif not (cursor.prev() if cursor.key() else cursor.last()):
                return None
            first_lsn = self._decode(b"times", cursor.key(), cursor.value(), _decode_u64)
            block_key = U64BE.pack(first_lsn)
            raw = txn.get(block_key, db=self.blocks_db)
            return None if raw is None else self._block(txn, block_key, raw)

    def blocks(self) -> list[BlockRow]:
        """Every block row (verify compares them with the segments' block indexes)."""
        with self._txn("read") as txn:
            return [self._block(txn, bytes(k), v) for k, v in txn.cursor(self.blocks_db)]

    def times(self) -> list[tuple[int, int]]:
        """Every (block first time, block first LSN) row."""
        return [(self._key(b"times", k), lsn) for k, lsn in self._rows(b"times", _decode_u64)]

    def chain_digest_at(self, lsn: int, start_digest: bytes, first_lsn: int) -> bytes | None:
        """The log's chain digest right after `lsn`, if `lsn` ends a piece (None otherwise)."""
        if lsn == first_lsn - 1:
            return start_digest
        seg = self.segment_containing(lsn)
        if seg is None:
            # Retention may have removed the segment ending at `lsn`: the next one links to it.
            after = self.segment_containing(lsn + 1)
            return after.prev_chain_digest if after is not None and after.first_lsn == lsn + 1 else None
        if lsn == seg.last_lsn:  # the trailer's digest: also right for a keyed chain, which needs the key to fold
            return seg.chain_digest
        # a keyed chain (segment version 3) folds only with its link key, which unlocking the repository
        # sets (docs/format.md, "Keyed chain"); without it, callers do not ask (pitr.timeline)
        digest = seg.prev_chain_digest
        for piece in seg.pieces:
            digest = chain.link(digest, piece) if self.link_key is None else \
                chain.keyed_link(self.link_key, digest, piece)
            if piece.last_lsn == lsn:
                return digest
        return None

    # snapshots ---------------------------------------------------------------------
    def add_snapshot(self, entry: SnapshotEntry) -> None:
        with self._txn("index a snapshot into", write=True) as txn:
            self._put(txn, b"snapshots", U64BE.pack(entry.lsn), entry.encode())
            txn.delete(entry.name.encode(), db=self.files_db)

    def remove_snapshot(self, lsn: int) -> None:
        with self._txn("remove a snapshot from", write=True) as txn:
            entry = self._get(txn, b"snapshots", U64BE.pack(lsn), SnapshotEntry.decode)
            txn.delete(U64BE.pack(lsn), db=self.snapshots_db)
            if entry is not None:
                txn.delete(entry.name.encode(), db=self.files_db)

    def snapshots(self) -> list[SnapshotEntry]:
        return [entry for _k, entry in self._rows(b"snapshots", SnapshotEntry.decode)]

    # files that could not be indexed, and verify results ------------------------------------
    def record_file(self, check: FileCheck) -> None:
        """Remember what indexing or verification found about one file (replacing what was known)."""
        self.record_files([check])

    def record_files(self, checks: Iterable[FileCheck]) -> None:
        with self._txn("record file checks in", write=True) as txn:
            for check in checks:
                self._put(txn, b"files", check.name.encode(), check.encode())

    def forget_file(self, name: str) -> None:
        with self._txn("write", write=True) as txn:
            txn.delete(name.encode(), db=self.files_db)

    def file_checks(self) -> list[FileCheck]:
        """Every file the catalog has a check for, by name."""
        checks = [check for _k, check in self._rows(b"files", FileCheck.decode)]
        for check in checks:
            if check.last_lsn < check.first_lsn:
                raise CatalogDamaged(f"catalog row files/{check.name} has an empty LSN range", path=self.path)
        return checks

    def unindexed(self) -> list[FileCheck]:
        """Files indexing could not read (name, LSN range, reason): their LSNs are a hole until reindexed."""
        return [c for c in self.file_checks() if c.status == "unindexed"]

    def dump(self) -> dict[str, list[tuple[bytes, bytes]]]:
        """Every row of every sub-database (for comparing a reindexed catalog with a live one)."""
        out = {}
        with self._txn("read") as txn:
            for name in (b"segments", b"blocks", b"times", b"keytables", b"keychunks", b"snapshots", b"gaps"):
                out[name.decode()] = [(bytes(k), bytes(v)) for k, v in txn.cursor(self._dbs[name])]
        return out

    def use_index_key(self, index_key: bytes) -> bool:
        """Key this catalog's digests under `index_key`: a catalog keyed otherwise, or not at all, is
        cleared first (its rows are rebuilt from the files). True when it was cleared."""
        wanted = index_key_id(index_key)
        with self._txn("read") as txn:
            known = self._get(txn, b"meta", INDEX_KEY_ID, load_json)
            store_id = self._get(txn, b"meta", b"store_id", load_json)
        cleared = known != wanted
        if cleared:
            if self.readonly:
                raise CatalogDamaged(f"the catalog {self.path} is not keyed with this repository's index key, "
                                     "and it is open read-only", path=self.path)
            self.clear()  # every row was digested otherwise
            with self._txn("key the index", write=True) as txn:
                if store_id is not None:
                    self._put(txn, b"meta", b"store_id", dump_json(store_id))
                self._put(txn, b"meta", INDEX_KEY_ID, dump_json(wanted))
        self.index_key = index_key
        return cleared

    def clear(self) -> None:
        with self._txn("clear", write=True) as txn:
            for db in self._dbs.values():
                txn.drop(db, delete=False)
            self._put(txn, b"meta", b"format", dump_json(FORMAT_VERSION))


__all__ = ["DB_NAMES", "FORMAT_VERSION", "Catalog", "KeyRow", "KeyTable"]
