"""The catalog's LMDB environment: opening, checking the format, translating LMDB errors, rebuilding.

No LMDB error leaves this package untranslated: a full disk is `DiskFull`, a
permission or I/O problem `FileError`, anything else `CatalogDamaged` (hint:
`pitr reindex`). A catalog found damaged when opened is kept as `damage` and
raised by every use, so that `rebuild` (and `pitr reindex`) can always run.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import lmdb

from pitr.catalog.entries import U64BE
from pitr.catalog.pagecheck import check_pages
from pitr.catalog.rows import decode_row, dump_json, load_json, seal
from pitr.catalog.trust import file_identity, record_identity, recorded_identity
from pitr.errors import CatalogDamaged, DiskFull, FileError, PitrError, file_error, lmdb_error
from pitr.lmdbfile import truncation_problem

FORMAT_VERSION = 3
MAP_SIZE = 1 << 40
DB_NAMES = (b"segments", b"blocks", b"times", b"keytables", b"keychunks", b"snapshots", b"gaps", b"files", b"meta")
CATALOG_DIR_NAMES = (".catalog", "catalog")
T = TypeVar("T")
Raw = bytes | memoryview
_FILE_ERRORS = (lmdb.ReadonlyError, lmdb.LockError, lmdb.ReadersFullError, lmdb.DiskError, lmdb.MemoryError,
                lmdb.TlsFullError)


class OutdatedCatalog(CatalogDamaged):
    """The catalog was written by an earlier pitr in an older format: a writer rebuilds it (it is derived data)."""

    def __init__(self, version: int, message: str, *, path: str) -> None:
        self.version = version
        super().__init__(message, path=path)


class CatalogEnvironment:
    """The LMDB environment of one catalog, its sub-databases and checksummed row access.

    A catalog found damaged when opened is kept as `damage`: every use raises
    it again, and `rebuild` starts a new, empty catalog in its place.
    """

    def __init__(self, path: str, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self.env: lmdb.Environment | None = None
        self.damage: CatalogDamaged | None = None
        self.trusted = False  # the file passed the page check (or its marker vouches for it)
        self.rebuilt_from: int | None = None  # the older format of a catalog this open replaced with a new one
        try:
            self._open()
        except OutdatedCatalog as exc:
            if readonly:
                self.damage = exc
            else:  # derived data in an older layout: start a new catalog, which the next sync fills
                self._rebuild_outdated(exc.version)
        except CatalogDamaged as exc:
            self.damage = exc

    def _rebuild_outdated(self, version: int) -> None:
        try:
            self.rebuild()
        except CatalogDamaged as exc:
            self.damage = exc
        else:
            self.rebuilt_from = version

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
        problem = truncation_problem(self.path)
        if problem is not None:  # mapping it would end the process with SIGBUS
            raise CatalogDamaged(problem, path=self.path)
        try:
            env = lmdb.open(self.path, map_size=MAP_SIZE, max_dbs=12, subdir=True, sync=True, metasync=False,
                            readahead=False, max_readers=256, readonly=self.readonly, mode=0o600)
        except lmdb.Error as exc:
            raise self._translate(exc, "open") from exc
        try:
            self._private_files()
            self._check_pages(env)
            c = not self.readonly
            dbs = {name: env.open_db(name, create=c) for name in DB_NAMES}
            if c:  # opening may have created databases: pitr's own writes to a file just found sound
                identity = file_identity(self.path)
                if identity is not None and identity != recorded_identity(self.path):
                    record_identity(self.path, identity)
            self.env = env
            self._dbs = dbs
            self.segments_db, self.blocks_db, self.times_db = (dbs[n] for n in DB_NAMES[:3])
            self.snapshots_db, self.gaps_db, self.files_db, self.meta_db = (dbs[n] for n in DB_NAMES[5:])
            self._check_format()
        except BaseException as exc:
            self.env = None
            env.close()
            if isinstance(exc, lmdb.Error):
                raise self._translate(exc, "open") from exc
            raise

    def _check_pages(self, env: lmdb.Environment) -> None:
        """Refuse a file whose pages would make LMDB read out of bounds or abort (pitr.catalog.pagecheck),
        unless its marker vouches for exactly this file (pitr.catalog.trust)."""
        identity = file_identity(self.path)
        if identity is None or identity != recorded_identity(self.path):
            with env.begin() as txn:  # holds the snapshot: no writer reuses its pages during the walk
                problem = check_pages(os.path.join(self.path, "data.mdb"), txn.id())
            if problem is not None:
                raise CatalogDamaged(f"the catalog's LMDB pages are damaged: {problem}", path=self.path)
        self.trusted = True

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
                raise OutdatedCatalog(1, f"the catalog has format 1 (rows without checksums), not {FORMAT_VERSION}",
                                      path=self.path)
            version = self._decode(b"meta", b"format", raw, load_json)
            if type(version) is int and 1 <= version < FORMAT_VERSION:
                raise OutdatedCatalog(version, f"the catalog has format {version}, older than {FORMAT_VERSION}",
                                      path=self.path)
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
                # pitr's own writer keeps a sound file sound: it vouches for what it commits, when
                # the file is still the one vouched for as it starts (the writer lock is held here)
                before = file_identity(self.path) if write and self.trusted else None
                vouch = before is not None and before == recorded_identity(self.path)
                yield txn
        except lmdb.Error as exc:
            raise self._translate(exc, operation) from exc
        if vouch:
            identity = file_identity(self.path)
            if identity is not None and identity != before:
                record_identity(self.path, identity)

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
