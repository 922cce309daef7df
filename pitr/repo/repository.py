"""A repository: storage backend + identity + watermark + the catalog that indexes it."""

from __future__ import annotations

import bisect
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

import anyio
import zstandard

from pitr.catalog.catalog import Catalog
from pitr.catalog.entries import BlockRow, FileCheck, SegmentEntry
from pitr.errors import (
    CorruptData,
    ForeignRepository,
    NotARepository,
    ObjectExists,
    RepositoryLost,
    WrongKey,
    file_error,
    to_corrupt,
)
from pitr.repo import layout, watermarks
from pitr.repo.continuity import LOST_HINT
from pitr.repo.identity import WATERMARK_HINT, WATERMARK_SKEW_NS, RepoIdentity, Watermark
from pitr.repo.indexing import index_segment, snapshot_entry
from pitr.repo.live import live_segments as live_segments  # re-exported: its home before pitr.repo.live
from pitr.repo.live import live_snapshots
from pitr.repo.watermarks import DamagedWatermark
from pitr.storage import open_storage
from pitr.storage.base import ObjectLock, Storage
from pitr.storage.local import LocalStorage
from pitr.storage.ratelimit import NO_LIMITS, TransferLimits
from pitr.timefmt import format_time
from segments import SegmentsError, parse_segment_name, parse_snapshot_name
from segments.block_seal import SegmentKeys
from segments.fsutil import makedirs_private
from segments.segment_format import BlockEntry
from segments.segment_reader import SegmentReader, decompress_block
from segments.source import FileSource, RangeSource

Progress = Callable[[str, int, int], None]
log = logging.getLogger(__name__)


@dataclass(slots=True)
class SyncReport:
    """What a catalog catch-up found in the repository.

    `broken` and `unindexed` list every file the catalog could not index, found
    by this catch-up or an earlier one (the catalog remembers them until they are
    deleted or a reindex reads them): their LSNs are a hole in the history.
    """

    indexed: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    broken: list[tuple[str, str]] = field(default_factory=list)
    unindexed: list[FileCheck] = field(default_factory=list)


def default_cache_dir(url: str) -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pitr", layout.repo_key(url))


class Repository:
    """One repository, opened with `open_repository`."""

    def __init__(self, storage: Storage, catalog: Catalog, cache_dir: str) -> None:
        self.storage = storage
        self.catalog = catalog
        self.cache_dir = cache_dir
        self.url = storage.url
        self._identity: RepoIdentity | None = None
        # An encrypted repository's keys, once `pitr.repo.keyring.unlock` opened its data key; None: none yet
        self.segment_keys: SegmentKeys | None = None
        self._sealed_readers: dict[str, SegmentReader] = {}
        self.damaged_watermarks: list[DamagedWatermark] = []  # what the last read_watermark skipped

    # identity ---------------------------------------------------------------------
    async def identity(self) -> RepoIdentity | None:
        """The identity document (checked field by field), or None when there is none."""
        if self._identity is None:
            info = await self.storage.stat(layout.IDENTITY)
            if info is None:
                return None
            ident = RepoIdentity.decode(await self.storage.read(layout.IDENTITY), f"{self.url}/{layout.IDENTITY}")
            await anyio.to_thread.run_sync(self._bind_catalog, str(ident.store_id))
            self._identity = ident
        return self._identity

    def _bind_catalog(self, store_id: str) -> None:
        """Make the catalog describe the history of `store_id` (a worker-thread call)."""
        known = self.catalog.get_meta("store_id")
        if known is not None and known != store_id:
            self.catalog.clear()  # the catalog describes another history: rebuild
        self.catalog.set_meta("store_id", store_id)

    async def require_identity(self) -> RepoIdentity:
        """The identity document; `NotARepository` when there is none."""
        ident = await self.identity()
        if ident is None:
            raise NotARepository(f"{self.url}: not a pitr repository (no {layout.IDENTITY} document)",
                                 hint="`pitr archive --repo URL` makes a new, empty place a repository")
        return ident

    async def claim(self, ident: RepoIdentity, *, archived_before: bool = False) -> RepoIdentity:
        """Make this repository hold `ident`'s history, or refuse if it holds another.

        Only a brand-new, empty repository is claimed: one holding files but no
        identity lost it, and one this store's archive marker says it already
        archived into (`archived_before`) lost everything; both are
        `RepositoryLost`, so a new history is never started over a lost one.
        """
        existing = await self.identity()
        if existing is None:
            if archived_before:
                raise RepositoryLost(
                    f"{self.url}: no {layout.IDENTITY} document, but this store has archived into this "
                    "repository before (its WAL directory holds an archive marker for it): the repository "
                    "was deleted or replaced", hint=LOST_HINT)
            leftovers = [i.name for i in await self.storage.list(layout.SEGMENTS)]
            leftovers += [i.name for i in await self.storage.list(layout.SNAPSHOTS)]
            leftovers += [i.name for i in await self.storage.list(watermarks.PREFIX)]
            if await self.storage.stat(layout.WATERMARK) is not None:
                leftovers.append(layout.WATERMARK)
            if leftovers:
                raise RepositoryLost(
                    f"{self.url}: holds {len(leftovers)} history file(s) ({leftovers[0]}, ...) but no "
                    f"{layout.IDENTITY} document: its identity was removed; refusing to start a history there",
                    hint=LOST_HINT)
            try:
                await self.storage.publish(layout.IDENTITY, ident.encode())
            except ObjectExists:
                pass  # another archiver claimed it at the same moment: checked below
            self._identity = None
            existing = await self.require_identity()
        if existing.store_id != ident.store_id:
            raise ForeignRepository(
                f"{self.url} holds the history of store {existing.store_id} ({existing.name}), not "
                f"{ident.store_id} ({ident.name}); use another repository for this store")
        return existing

    # watermark --------------------------------------------------------------------
    async def read_watermark(self, *, now_ns: int | None = None, scan_all: bool = False) -> Watermark | None:
        """The newest valid watermark, checked against the present (given `now_ns`); None when there is none.

        Watermarks are write-once objects (`pitr.repo.watermarks`): the newest by
        (LSN, time) that is whole, of this store and (sealed) opens under the
        repository's key wins; damaged ones are skipped, logged and listed in
        `damaged_watermarks` (verify reports them). The single ``watermark`` file of
        older repositories is read when no object is valid. Completeness claimed
        beyond now plus `WATERMARK_SKEW_NS` (given `now_ns`) is `CorruptData`: it
        would make a restore drop keys with a TTL or invent a quiet interval.
        Callers that answer about the present (restore, verify) pass their clock's
        `now_ns`. A watermark claiming commits beyond the repository's segments is
        returned as it is: it is the evidence that the newest segments are missing,
        and the timeline reports those LSNs as a hole. `scan_all` reads every
        watermark object (verify), else listing starts at the catalog's last one.
        """
        ident = await self.identity()
        known = None if scan_all else await anyio.to_thread.run_sync(self._known_watermark)
        found, self.damaged_watermarks = await watermarks.read_newest(
            self.storage, self.url, None if ident is None else ident.store_id,
            ident is not None and ident.encryption is not None, self.segment_keys, known=known, scan_all=scan_all)
        if found is None and await self.storage.stat(layout.WATERMARK) is not None:
            where = f"{self.url}/{layout.WATERMARK}"  # an older repository's single file: read, never rewritten
            legacy = Watermark.decode(await self.storage.read(layout.WATERMARK), where)
            if ident is None or legacy.store_id == ident.store_id:
                found = legacy, where
        if found is None:
            return None
        mark, where = found
        if now_ns is not None and mark.complete_through_ns > now_ns + WATERMARK_SKEW_NS:
            raise CorruptData(
                f"the watermark says the archive is complete through {format_time(mark.complete_through_ns)}"
                f", later than now ({format_time(now_ns)}) plus {WATERMARK_SKEW_NS // 10**9} s of clock skew",
                path=where, hint=WATERMARK_HINT)
        return mark

    def _known_watermark(self) -> tuple[int, int] | None:
        """The catalog's last watermark, as a hint where to start listing (a damaged catalog: none)."""
        try:
            return self.catalog.watermark()
        except CorruptData:
            return None

    async def write_watermark(self, mark: Watermark) -> None:
        """Publish how far the archive is known complete, as a new write-once object (never replacing)."""
        name = watermarks.object_name(mark.lsn, mark.complete_through_ns)
        try:
            await self.storage.publish(name, watermarks.encode(mark, self.segment_keys))
        except ObjectExists:
            pass  # the same name says the same thing (a retry whose first attempt landed)
        await anyio.to_thread.run_sync(self.catalog.set_meta, "watermark", [mark.lsn, mark.complete_through_ns])

    def watermark(self) -> tuple[int, int] | None:
        """The indexed watermark (LSN, complete-through time); reads the catalog (blocking)."""
        return self.catalog.watermark()

    # reading files ------------------------------------------------------------------
    def local_path(self, object_name: str) -> str | None:
        if isinstance(self.storage, LocalStorage):
            return self.storage.local_path(object_name)
        return None

    def _cache_path(self, object_name: str) -> str:
        return os.path.join(self.cache_dir, "objects", *object_name.split("/"))

    async def open_source(self, object_name: str, *, fresh: bool = False) -> RangeSource:
        """A byte source for a published file: the file itself, or a cached download.

        `fresh` reads a remote object from the repository even when a download
        is cached (verification must check what the repository holds).
        """
        path = self.local_path(object_name)
        if path is not None:
            return await anyio.to_thread.run_sync(FileSource, path)
        cached = self._cache_path(object_name)
        if not fresh:
            source = await anyio.to_thread.run_sync(_cached_source, cached)
            if source is not None:
                return source
        # streamed into the cache and read from there: memory does not grow with the object
        tmp = await anyio.to_thread.run_sync(_cache_temporary, cached)
        try:
            await self.storage.download(object_name, tmp)
            source = await anyio.to_thread.run_sync(_publish_cached, tmp, cached)
        except BaseException:
            _remove_cached(tmp)  # synchronous: a cancelled download still leaves no temporary file
            raise
        source.name = object_name
        return source

    async def remember(self, object_name: str, data: bytes) -> None:
        """Keep a copy of a file this process just published to a remote repository (merges reuse it)."""
        if self.local_path(object_name) is None:
            await anyio.to_thread.run_sync(_write_cache, self._cache_path(object_name), data)

    async def delete(self, object_name: str) -> None:
        """Delete a published file and any cached copy of it."""
        await self.storage.delete(object_name)
        if self.local_path(object_name) is None:
            await anyio.to_thread.run_sync(_remove_cached, self._cache_path(object_name))

    async def read_block(self, segment: SegmentEntry, block: BlockRow) -> bytes:
        """One decompressed, CRC-checked block, reading only its bytes (an encrypted repository's
        through the segment's own reader: opening a block needs its header's salt and its index)."""
        if self.segment_keys is not None:
            return await self._read_sealed_block(segment, block)
        name = layout.segment_object(segment.name)
        data = await self.storage.read(name, block.offset, block.compressed_size)
        entry = BlockEntry(block.first_lsn, block.first_ts_ns, block.offset, block.compressed_size,
                           block.raw_size, block.record_count, block.crc)
        try:
            return decompress_block(zstandard.ZstdDecompressor(), data, entry, f"{self.url}/{name}")
        except SegmentsError as exc:
            raise to_corrupt(exc) from exc

    async def _read_sealed_block(self, segment: SegmentEntry, block: BlockRow) -> bytes:
        name = layout.segment_object(segment.name)
        reader = self._sealed_readers.get(segment.name)
        if reader is None:
            source = await self.open_source(name)
            try:
                reader = await anyio.to_thread.run_sync(lambda: SegmentReader(source, keys=self.segment_keys))
            except SegmentsError as exc:
                source.close()
                raise to_corrupt(exc, f"{self.url}/{name}") from exc
            while len(self._sealed_readers) >= 16:
                self._sealed_readers.pop(next(iter(self._sealed_readers))).close()
            self._sealed_readers[segment.name] = reader
        opened = reader
        at = bisect.bisect_left([e.first_lsn for e in opened.meta.index], block.first_lsn)
        if at == len(opened.meta.index) or opened.meta.index[at].offset != block.offset:
            raise CorruptData(f"the catalog's block at LSN {block.first_lsn} is not one of the segment's",
                              path=f"{self.url}/{name}", hint="pitr reindex")
        try:
            return await anyio.to_thread.run_sync(opened.read_block, at)
        except SegmentsError as exc:
            raise to_corrupt(exc, f"{self.url}/{name}") from exc

    # catalog catch-up ---------------------------------------------------------------
    async def sync(self, progress: Progress | None = None) -> SyncReport:
        """Index files the catalog lacks and forget files that are gone.

        An encrypted repository is refused (`WrongKey`) until its key opened it: nothing is read or
        indexed, and an archiver never writes plaintext into it."""
        report = SyncReport()
        ident = await self.identity()
        if ident is not None and ident.encryption is not None and self.segment_keys is None:
            raise WrongKey(f"{self.url} is encrypted (key id {ident.encryption.key_id.hex()}) and no key was given",
                           hint="give the key file with --key-file FILE or PITR_KEY_FILE")
        # The watermark is read before the listing: the archiver publishes a segment before the
        # watermark that covers it, so the files listed afterwards reach at least as far.
        mark = await self.read_watermark()
        listed = await self.storage.list(layout.SEGMENTS)
        keep, report.superseded = live_segments(info.name[len(layout.SEGMENTS):] for info in listed)
        known = {e.name: e for e in await anyio.to_thread.run_sync(self.catalog.segments)}
        for name, entry in known.items():
            if name not in keep:
                await anyio.to_thread.run_sync(self.catalog.remove_segment, entry.first_lsn)
                report.dropped.append(name)
        live_snaps, superseded_snaps = live_snapshots(
            i.name[len(layout.SNAPSHOTS):] for i in await self.storage.list(layout.SNAPSHOTS))
        report.superseded += superseded_snaps
        listed_snapshots = set(live_snaps)  # a snapshot a repair superseded is read by no one
        checks = {c.name: c for c in await anyio.to_thread.run_sync(self.catalog.file_checks)}
        for name in checks:
            if name not in keep and name not in listed_snapshots:  # the file is gone: so is what we knew
                await anyio.to_thread.run_sync(self.catalog.forget_file, name)
        # A file that could not be indexed is not read again on every command: reindex retries it.
        skipped = {n for n, c in checks.items() if c.status == "unindexed"}
        todo = [n for n in sorted(keep, key=lambda n: keep[n]) if n not in known and n not in skipped]
        for i, name in enumerate(todo):
            if progress:
                progress("index", i, len(todo))
            await self._index_segment(name, report)
        await self._sync_snapshots(report, listed_snapshots, skipped)
        if mark is not None:
            await anyio.to_thread.run_sync(self.catalog.set_meta, "watermark", [mark.lsn, mark.complete_through_ns])
        if progress and todo:
            progress("index", len(todo), len(todo))
        report.unindexed = await anyio.to_thread.run_sync(self.catalog.unindexed)
        report.broken = [(c.name, c.detail) for c in report.unindexed]
        return report

    async def _index_segment(self, name: str, report: SyncReport) -> None:
        object_name = layout.segment_object(name)
        source = await self.open_source(object_name)
        try:
            gaps: list[tuple[int, int]] = []
            entry, blocks, rows = await anyio.to_thread.run_sync(
                lambda: index_segment(name, source, gaps, keys=self.segment_keys))
        except SegmentsError as exc:
            first, last = parse_segment_name(name) or (0, 0)
            await anyio.to_thread.run_sync(self.catalog.record_file, FileCheck(
                name, "segment", first, last, "unindexed", str(exc), time.time_ns(), "index"))
            return
        finally:
            source.close()

        def add() -> None:
            replaces = [s.first_lsn for s in self.catalog.segments()
                        if entry.first_lsn <= s.first_lsn and s.last_lsn <= entry.last_lsn]
            self.catalog.add_segment(entry, blocks, rows, replaces, gaps)

        await anyio.to_thread.run_sync(add)
        report.indexed.append(name)

    async def _sync_snapshots(self, report: SyncReport, listed: set[str], skipped: set[str]) -> None:
        known = {s.name: s for s in await anyio.to_thread.run_sync(self.catalog.snapshots)}
        for name, snap in known.items():
            if name not in listed:
                await anyio.to_thread.run_sync(self.catalog.remove_snapshot, snap.lsn)
                report.dropped.append(name)
        for name in sorted(listed - set(known) - skipped):
            source = await self.open_source(layout.snapshot_object(name))
            try:
                entry = await anyio.to_thread.run_sync(
                    partial(snapshot_entry, name, source, keys=self.segment_keys))
            except SegmentsError as exc:
                lsn = parse_snapshot_name(name) or 0
                await anyio.to_thread.run_sync(self.catalog.record_file, FileCheck(
                    name, "snapshot", lsn, lsn, "unindexed", str(exc), time.time_ns(), "index"))
                continue
            finally:
                source.close()
            await anyio.to_thread.run_sync(self.catalog.add_snapshot, entry)
            report.indexed.append(name)

    async def reindex(self, progress: Progress | None = None) -> SyncReport:
        """Rebuild the catalog from the repository's files alone, whatever state the old one is in.

        The old catalog is removed (a damaged LMDB file, a regular file in its
        place, rows failing their checksums) and a new one is built from nothing.
        """
        await anyio.to_thread.run_sync(self.catalog.rebuild)
        self._identity = None
        return await self.sync(progress)


def _cached_source(path: str) -> FileSource | None:
    """The cached download of an immutable object, if there is one."""
    try:
        return FileSource(path)
    except FileNotFoundError:
        return None


def _remove_cached(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _cache_temporary(path: str) -> str:
    """A new private temporary file beside the cached download `path` (directories 0700, file 0600)."""
    try:
        makedirs_private(os.path.dirname(path))
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        os.close(fd)
    except OSError as exc:
        raise file_error(exc, path, "create the cached download") from exc
    return tmp


def _publish_cached(tmp: str, path: str) -> FileSource:
    """Move a finished download into place and open it (the object is immutable: a replace is safe)."""
    try:
        os.replace(tmp, path)
        return FileSource(path)
    except OSError as exc:
        raise file_error(exc, path, "keep the cached download") from exc


def _write_cache(path: str, data: bytes) -> None:
    """Cache a downloaded immutable object (private: directories 0700, the file 0600 from mkstemp)."""
    try:
        makedirs_private(os.path.dirname(path))
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            _remove_cached(tmp)
            raise
    except OSError as exc:
        raise file_error(exc, path, "write the cached download") from exc


def catalog_dir(storage: Storage, cache_dir: str | None) -> str:
    """Beside a local repository by default; else in a per-repository folder of the cache directory."""
    if isinstance(storage, LocalStorage) and cache_dir is None:
        return os.path.join(storage.root, layout.LOCAL_CATALOG_DIR)
    if cache_dir is None:
        return os.path.join(default_cache_dir(storage.url), "catalog")
    return os.path.join(cache_dir, layout.repo_key(storage.url), "catalog")


def _open_local_side(storage: Storage, cache_dir: str | None, create: bool) -> tuple[Catalog, str]:
    """Check a local repository directory and open the catalog and work directory."""
    if isinstance(storage, LocalStorage) and not os.path.isdir(storage.root):
        if not create:
            raise NotARepository(f"{storage.root}: no repository there (the directory does not exist)",
                                 hint="check --repo / PITR_REPO; `pitr archive` creates a repository")
        try:
            makedirs_private(storage.root)
        except OSError as exc:
            raise file_error(exc, storage.root, "create the repository directory") from exc
    cdir = catalog_dir(storage, cache_dir)
    work = os.path.join(storage.root, ".work") if isinstance(storage, LocalStorage) and cache_dir is None \
        else os.path.dirname(cdir)
    try:
        makedirs_private(work)
    except OSError as exc:
        raise file_error(exc, work, "create the work directory") from exc
    return Catalog(cdir), work


@asynccontextmanager
async def open_repository(url: str, *, cache_dir: str | None = None, s3_endpoint: str | None = None,
                          create: bool = False, limits: TransferLimits = NO_LIMITS,
                          object_lock: ObjectLock | None = None) -> AsyncIterator[Repository]:
    """Open a repository and its catalog; `create` makes a missing local directory; `limits` caps a
    remote repository's transfers; `object_lock` retains every object it puts (S3 Object Lock)."""
    storage = open_storage(url, s3_endpoint=s3_endpoint, limits=limits, object_lock=object_lock)
    try:
        catalog, work = await anyio.to_thread.run_sync(_open_local_side, storage, cache_dir, create)
    except BaseException:
        await storage.aclose()
        raise
    repo = Repository(storage, catalog, work)
    try:
        yield repo
    finally:
        for reader in repo._sealed_readers.values():
            reader.close()
        catalog.close()
        await storage.aclose()
