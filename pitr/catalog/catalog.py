"""The LMDB catalog: the repository's files indexed by LSN, by time and by key.

Sub-databases (big-endian integer keys so LMDB's byte order is numeric order);
every value ends with a CRC-32C over sub-database, key and payload
(`pitr.catalog.rows`, specified in docs/format.md "Catalog"):
    segments   u64 first_lsn -> SegmentEntry (JSON)
    blocks     u64 block first_lsn -> BlockRow       (sparse LSN index)
    times      u64 block first_ts -> u64 block first_lsn   (time -> LSN)
    keys       u16 len | key | u64 ts -> u64 lsn, u8 kind, u8 flags   (audit)
    snapshots  u64 lsn -> SnapshotEntry (JSON)
    gaps       u64 lsn -> u64 time of the commit before it (commits after a loss of source history)
    files      file name -> FileCheck (JSON): files that could not be indexed, verify results
    meta       format, store identity, watermark (JSON)

The catalog is derived data: `Repository.reindex` rebuilds it from the files.
A catalog that cannot be opened or read raises `CatalogDamaged` (hint:
`pitr reindex`); no LMDB error leaves this module untranslated.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import lmdb

from pitr.catalog.entries import (
    KEY_FLAG_EXPIRY,
    KEY_VALUE,
    U64BE,
    BlockRow,
    FileCheck,
    KeyVersion,
    SegmentEntry,
    SnapshotEntry,
    key_prefix,
)
from pitr.catalog.rows import decode_row, dump_json, load_json, seal
from pitr.errors import CatalogDamaged, DiskFull, FileError, PitrError, file_error, lmdb_error
from segments import chain

FORMAT_VERSION = 2
MAP_SIZE = 1 << 40
KeyRow = tuple[bytes, int, int, int, bool]  # key, ts, lsn, kind, has_expiry
DB_NAMES = (b"segments", b"blocks", b"times", b"keys", b"snapshots", b"gaps", b"files", b"meta")
CATALOG_DIR_NAMES = (".catalog", "catalog")
T = TypeVar("T")
Raw = bytes | memoryview
_FILE_ERRORS = (lmdb.ReadonlyError, lmdb.LockError, lmdb.ReadersFullError, lmdb.DiskError, lmdb.MemoryError,
                lmdb.TlsFullError)


def _u64(raw: bytes) -> int:
    if len(raw) != 8:
        raise ValueError(f"an 8-byte integer has {len(raw)} bytes")
    return int(U64BE.unpack(raw)[0])


def _decode_u64(raw: bytes) -> int:
    return _u64(raw)


def _decode_key_value(raw: bytes) -> tuple[int, int, int]:
    lsn, kind, flags = KEY_VALUE.unpack(raw)
    return int(lsn), int(kind), int(flags)


class Catalog:
    """One LMDB environment indexing one repository.

    A catalog found damaged when opened is kept as `damage`: every use raises
    it again, and `rebuild` starts a new, empty catalog in its place.
    """

    def __init__(self, path: str, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self.env: lmdb.Environment | None = None
        self.damage: CatalogDamaged | None = None
        try:
            self._open()
        except CatalogDamaged as exc:
            self.damage = exc

    # opening -----------------------------------------------------------------------
    def _open(self) -> None:
        if os.path.lexists(self.path) and not os.path.isdir(self.path):
            raise CatalogDamaged("the catalog is not a directory", path=self.path)
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            if os.stat(self.path).st_uid == os.geteuid():
                os.chmod(self.path, 0o700)
        except OSError as exc:
            raise file_error(exc, self.path, "create the catalog directory") from exc
        try:
            env = lmdb.open(self.path, map_size=MAP_SIZE, max_dbs=12, subdir=True, sync=True, metasync=False,
                            readahead=False, max_readers=256, readonly=self.readonly, mode=0o600)
        except lmdb.Error as exc:
            raise self._translate(exc, "open") from exc
        try:
            self._private_files()
            c = not self.readonly
            dbs = {name: env.open_db(name, create=c) for name in DB_NAMES}
            self.env = env
            self._dbs = dbs
            self.segments_db, self.blocks_db, self.times_db, self.keys_db = (dbs[n] for n in DB_NAMES[:4])
            self.snapshots_db, self.gaps_db, self.files_db, self.meta_db = (dbs[n] for n in DB_NAMES[4:])
            self._check_format()
        except BaseException as exc:
            self.env = None
            env.close()
            if isinstance(exc, lmdb.Error):
                raise self._translate(exc, "open") from exc
            raise

    def _private_files(self) -> None:
        for name in ("data.mdb", "lock.mdb"):
            path = os.path.join(self.path, name)
            try:
                st = os.stat(path)
                if st.st_uid == os.geteuid() and st.st_mode & 0o077:
                    os.chmod(path, 0o600)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise file_error(exc, path, "make the catalog private") from exc

    def _check_format(self) -> None:
        with self._txn("open", write=not self.readonly) as txn:
            raw = txn.get(b"format", db=self.meta_db)
            if raw is None:
                if any(txn.stat(db)["entries"] for db in self._dbs.values()):
                    raise CatalogDamaged("the catalog has rows but no format row", path=self.path)
                if not self.readonly:
                    self._put(txn, b"meta", b"format", dump_json(FORMAT_VERSION))
                return
            if bytes(raw) == b"1":
                raise CatalogDamaged(f"the catalog has format 1 (rows without checksums), not {FORMAT_VERSION}",
                                     path=self.path)
            version = self._decode(b"meta", b"format", raw, load_json)
            if version != FORMAT_VERSION:
                raise CatalogDamaged(f"the catalog has format {version!r}, not {FORMAT_VERSION}", path=self.path)

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None

    def rebuild(self) -> None:
        """Throw the old catalog away, whatever state it is in, and open a new, empty one."""
        if os.path.basename(os.path.normpath(self.path)) not in CATALOG_DIR_NAMES:
            raise PitrError(f"{self.path}: refusing to remove a catalog not named {' or '.join(CATALOG_DIR_NAMES)}")
        self.close()
        try:
            if os.path.islink(self.path) or (os.path.lexists(self.path) and not os.path.isdir(self.path)):
                os.unlink(self.path)
            elif os.path.isdir(self.path):
                shutil.rmtree(self.path)
        except OSError as exc:
            raise file_error(exc, self.path, "remove the damaged catalog") from exc
        self.damage = None
        self._open()

    # transactions --------------------------------------------------------------------
    def _live(self) -> lmdb.Environment:
        if self.damage is not None:
            raise CatalogDamaged(self.damage.message, path=self.path) from self.damage
        if self.env is None:
            raise PitrError(f"{self.path}: the catalog is closed")
        return self.env

    @contextmanager
    def _txn(self, operation: str, *, write: bool = False) -> Iterator[lmdb.Transaction]:
        """A transaction whose LMDB errors leave as pitr errors (DiskFull, FileError, CatalogDamaged)."""
        env = self._live()
        try:
            with env.begin(write=write) as txn:
                yield txn
        except lmdb.Error as exc:
            raise self._translate(exc, operation) from exc

    def _translate(self, exc: lmdb.Error, operation: str) -> PitrError:
        text = str(exc)
        if "No space left" in text or "quota exceeded" in text:
            return DiskFull(f"{self.path}: cannot {operation} the catalog: no space left on the device",
                            path=self.path, operation=operation, errno=errno.ENOSPC,
                            hint="free space on that file system, then run the command again")
        err = lmdb_error(exc, self.path, f"{operation} the catalog")
        if isinstance(err, DiskFull):
            return err
        if isinstance(exc, _FILE_ERRORS) or "Permission denied" in text or "Read-only file system" in text:
            return err if isinstance(err, FileError) else FileError(str(err), path=self.path, operation=operation)
        return CatalogDamaged(f"the catalog cannot be read ({operation}): {exc}", path=self.path)

    def _decode(self, db: bytes, key: Raw, raw: Raw, decode: Callable[[bytes], T]) -> T:
        return decode_row(db, bytes(key), raw, self.path, decode)

    def _put(self, txn: lmdb.Transaction, db: bytes, key: bytes, payload: bytes) -> None:
        txn.put(key, seal(db, key, payload), db=self._dbs[db])

    def _get(self, txn: lmdb.Transaction, db: bytes, key: bytes, decode: Callable[[bytes], T]) -> T | None:
        raw = txn.get(key, db=self._dbs[db])
        return None if raw is None else self._decode(db, key, raw, decode)

    def _key(self, db: bytes, raw: Raw) -> int:
        """A big-endian u64 row key (its bytes are covered by the value's checksum)."""
        if len(raw) != 8:
            raise CatalogDamaged(f"catalog row {db.decode()}/{bytes(raw).hex()} has a malformed key", path=self.path)
        return int(U64BE.unpack(raw)[0])

    def _rows(self, db: bytes, decode: Callable[[bytes], T]) -> list[tuple[bytes, T]]:
        with self._txn("read") as txn:
            return [(bytes(k), self._decode(db, k, v, decode)) for k, v in txn.cursor(self._dbs[db])]

    # meta ------------------------------------------------------------------------
    def get_meta(self, name: str) -> Any:
        with self._txn("read") as txn:
            return self._get(txn, b"meta", name.encode(), load_json)

    def set_meta(self, name: str, value: Any) -> None:
        with self._txn("write", write=True) as txn:
            self._put(txn, b"meta", name.encode(), dump_json(value))

    def watermark(self) -> tuple[int, int] | None:
        """The indexed watermark (LSN, complete-through time), checked for shape."""
        value = self.get_meta("watermark")
        if value is None:
            return None
        if not (isinstance(value, list) and len(value) == 2 and all(type(v) is int and 0 <= v < 1 << 64
                                                                     for v in value)):
            raise CatalogDamaged("catalog row meta/watermark is not [LSN, time]", path=self.path)
        return int(value[0]), int(value[1])

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
        with self._txn("index a segment into", write=True) as txn:
            for first in replaces:
                self._drop_segment_rows(txn, first)
            self._put(txn, b"segments", U64BE.pack(entry.first_lsn), entry.encode())
            for b in blocks:
                self._put(txn, b"blocks", U64BE.pack(b.first_lsn), b.encode())
                self._put(txn, b"times", U64BE.pack(b.first_ts_ns), U64BE.pack(b.first_lsn))
            if rows:
                txn.cursor(self.keys_db).putmulti([(k, seal(b"keys", k, v)) for k, v in rows],
                                                  dupdata=False, overwrite=True)
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
        """Forget a deleted segment and the key versions inside it.

        Without `key_rows` (the file is gone and cannot be read) the key index is
        scanned for versions inside the segment's LSN range.
        """
        with self._txn("remove a segment from", write=True) as txn:
            entry = self._drop_segment_rows(txn, first_lsn)
            if key_rows is not None:
                for k, ts, lsn, _kind, _exp in key_rows:
                    txn.delete(key_prefix(k) + U64BE.pack(ts), db=self.keys_db)
                    txn.delete(U64BE.pack(lsn), db=self.gaps_db)
            elif entry is not None:
                cursor = txn.cursor(self.keys_db)
                found = cursor.first()
                while found:
                    lsn, _kind, _flags = self._decode(b"keys", cursor.key(), cursor.value(), _decode_key_value)
                    found = cursor.delete() and bool(cursor.key()) if entry.first_lsn <= lsn <= entry.last_lsn \
                        else cursor.next()
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
        digest = seg.prev_chain_digest
        for piece in seg.pieces:
            digest = chain.link(digest, piece)
            if piece.last_lsn == lsn:
                return digest
        return None

    # key index -------------------------------------------------------------------
    def _version(self, key: bytes, value: Raw, prefix_len: int) -> KeyVersion:
        lsn, kind, flags = self._decode(b"keys", key, value, _decode_key_value)
        return KeyVersion(int(U64BE.unpack_from(key, prefix_len)[0]), lsn, kind, bool(flags & KEY_FLAG_EXPIRY))

    def key_versions(self, key: bytes, since_ns: int | None = None,
                     until_ns: int | None = None) -> Iterator[KeyVersion]:
        """Versions of `key` with since <= ts <= until, oldest first."""
        prefix = key_prefix(key)
        start = prefix + U64BE.pack(max(since_ns or 0, 0))
        with self._txn("read") as txn:
            cursor = txn.cursor(self.keys_db)
            if not cursor.set_range(start):
                return
            for raw_key, v in cursor:
                k = bytes(raw_key)
                if not k.startswith(prefix) or len(k) != len(prefix) + 8:
                    break
                version = self._version(k, v, len(prefix))
                if until_ns is not None and version.ts_ns > until_ns:
                    break
                yield version

    def key_version_at(self, key: bytes, ts_ns: int, *, inclusive: bool = True,
                       skip: int = 0) -> KeyVersion | None:
        """The newest version of `key` with ts <= ts_ns (< when exclusive), O(log n).

        `skip` steps further back (used when a long key's digest collides).
        """
        prefix = key_prefix(key)
        bound = ts_ns + 1 if inclusive else ts_ns
        with self._txn("read") as txn:
            cursor = txn.cursor(self.keys_db)
            found = cursor.prev() if cursor.set_range(prefix + U64BE.pack(max(bound, 0))) else cursor.last()
            for _ in range(skip):
                if not found:
                    break
                found = cursor.prev()
            if not found:
                return None
            k = bytes(cursor.key())
            if not k.startswith(prefix) or len(k) != len(prefix) + 8:
                return None
            return self._version(k, cursor.value(), len(prefix))

    def key_index(self) -> Iterator[tuple[bytes, int, int, int]]:
        """Every key-index row as (row key, LSN, kind, flags), in key order (verify compares them)."""
        with self._txn("read") as txn:
            for k, v in txn.cursor(self.keys_db):
                lsn, kind, flags = self._decode(b"keys", k, v, _decode_key_value)
                yield bytes(k), lsn, kind, flags

    def keys_count(self) -> int:
        with self._txn("read") as txn:
            return int(txn.stat(self.keys_db)["entries"])

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
            for name in (b"segments", b"blocks", b"times", b"keys", b"snapshots", b"gaps"):
                out[name.decode()] = [(bytes(k), bytes(v)) for k, v in txn.cursor(self._dbs[name])]
        return out

    def clear(self) -> None:
        with self._txn("clear", write=True) as txn:
            for db in self._dbs.values():
                txn.drop(db, delete=False)
            self._put(txn, b"meta", b"format", dump_json(FORMAT_VERSION))


