"""Copying a repository's history (or a window of it) into another repository.

Order of work, so that an interrupted copy is resumed by running it again:

1. the source's identity, then its watermark, then its catalog caught up (the
   watermark is read before the listing, so the files listed reach at least
   as far as it claims);
2. the target claims the source's identity (a new, empty target), or already
   holds exactly it; anything else is refused (`ForeignRepository`,
   `RepositoryLost`) before a byte is written;
3. each file in log order (the base snapshot, then each segment, each later
   snapshot after the segment holding its LSN): fully verified on the local
   bytes that are then published, segments also linked to the previous one
   by their chain digest; a file the target already holds is compared byte for
   byte with the verified copy and skipped when equal, reported (never
   replaced) when not;
4. the watermark, last, and only when the target holds every commit through it;
5. the target's catalog caught up (`Repository.sync`), and its windows reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from pitr.catalog.entries import FileCheck
from pitr.errors import ForeignRepository, Gap, InvalidArgument, ObjectExists, Window
from pitr.repo.identity import RepoIdentity, Watermark
from pitr.repo.keyring import adopt_keys, copy_wraps
from pitr.repo.repository import Repository
from pitr.timeline import build_timeline
from pitr.transfer.files import RepoFile, check_file, file_digest, local_copy, local_path_of, staging_dir
from segments.chain_check import check_chain
from segments.segment_reader import SegmentMeta

Progress = Callable[[str, int, int], None]
Say = Callable[[str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyOptions:
    """Which part of the history to copy: all of it, or the files a window needs.

    `since_*` names the earliest moment the copy must be able to restore (the
    newest snapshot at or before it is copied as its base), `until_*` the
    latest (every segment up to the one holding it). At most one of each pair.
    """

    since_lsn: int | None = None
    until_lsn: int | None = None
    since_ns: int | None = None
    until_ns: int | None = None

    def __post_init__(self) -> None:
        if self.since_lsn is not None and self.since_ns is not None:
            raise InvalidArgument("give --since or --since-lsn, not both")
        if self.until_lsn is not None and self.until_ns is not None:
            raise InvalidArgument("give --until or --until-lsn, not both")
        for name in ("since_lsn", "until_lsn"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InvalidArgument(f"--{name.replace('_', '-')} must not be negative, not {value}")

    @property
    def whole(self) -> bool:
        return self.since_lsn is None and self.since_ns is None and self.until_lsn is None and self.until_ns is None


@dataclass(slots=True)
class CopyReport:
    """What a copy did, and what the target can restore afterwards."""

    source: str
    target: str
    copied: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)  # already at the target, byte for byte the same
    differing: list[str] = field(default_factory=list)  # at the target but different: left alone
    damaged: list[tuple[str, str]] = field(default_factory=list)  # at the source, failing their checks
    source_holes: list[Gap] = field(default_factory=list)  # LSNs in the range the source does not hold
    bytes_copied: int = 0
    watermark: bool = False  # the source's watermark was published at the target
    windows: list[Window] = field(default_factory=list)  # the target's, after the copy
    holes: list[Gap] = field(default_factory=list)  # the target's, after the copy
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Everything chosen is at the target, verified, and no file there contradicts the source."""
        return not self.differing and not self.damaged and not self.source_holes and bool(self.windows)


def _select(source: Repository, options: CopyOptions) -> tuple[list[RepoFile], int]:
    """The files the copy needs, in log order, and the LSN the chosen base ends at (a worker-thread call)."""
    catalog = source.catalog
    segments = catalog.segments()
    snapshots = catalog.snapshots()
    base_lsn = -1
    if options.since_lsn is not None or options.since_ns is not None:
        bases = [s for s in snapshots if (s.lsn <= options.since_lsn if options.since_lsn is not None
                                          else s.ts_ns <= (options.since_ns or 0))]
        base_lsn = max((s.lsn for s in bases), default=-1)
    if options.until_lsn is not None:
        segments = [s for s in segments if s.first_lsn <= options.until_lsn]
        snapshots = [s for s in snapshots if s.lsn <= options.until_lsn]
    elif options.until_ns is not None:
        segments = [s for s in segments if s.first_ts_ns <= options.until_ns]
        snapshots = [s for s in snapshots if s.ts_ns <= options.until_ns]
    files = [RepoFile(s.name, "segment", s.first_lsn, s.last_lsn, s.size) for s in segments if s.last_lsn > base_lsn]
    files += [RepoFile(s.name, "snapshot", s.lsn, s.lsn, s.size) for s in snapshots if s.lsn >= base_lsn]
    # a snapshot at LSN L goes after the segment holding L (its binding) and before the one starting at L + 1
    files.sort(key=lambda f: (f.first_lsn, 0) if f.kind == "segment" else (f.first_lsn + 1, -1))
    return files, base_lsn


def _holes(files: list[RepoFile], base_lsn: int) -> list[Gap]:
    """LSN ranges between the chosen base and the last chosen segment that no segment of the source holds."""
    holes = []
    reach = base_lsn
    for file in (f for f in files if f.kind == "segment"):
        if reach >= 0 and file.first_lsn > reach + 1:
            holes.append(Gap(reach + 1, file.first_lsn - 1, "missing: the source holds no segment with these LSNs"))
        reach = max(reach, file.last_lsn)
    return holes


async def _claim(target: Repository, ident: RepoIdentity) -> None:
    existing = await target.identity()
    if existing is not None and existing != ident:
        raise ForeignRepository(
            f"{target.url} holds the history of store {existing.store_id} ({existing.name}, from LSN "
            f"{existing.first_lsn}), not the one being copied: store {ident.store_id} ({ident.name}, from LSN "
            f"{ident.first_lsn}); nothing was copied: copy into a new, empty repository")
    await target.claim(ident)


async def copy_history(source: Repository, target: Repository, options: CopyOptions = CopyOptions(), *,
                       progress: Progress | None = None, say: Say | None = None) -> CopyReport:
    """Copy the source's history (or the window `options` names) into `target`, verified file by file."""
    started = time.monotonic()
    report = CopyReport(source.url, target.url)
    ident = await source.require_identity()
    mark = await source.read_watermark(now_ns=time.time_ns())
    await source.sync()
    await _claim(target, ident)
    await adopt_keys(target, source)  # an encrypted history: the same identity, so the same data key
    await copy_wraps(source, target)  # and every key rotation added opens the copy too
    files, base_lsn = await anyio.to_thread.run_sync(_select, source, options)
    unindexed = await anyio.to_thread.run_sync(source.catalog.unindexed)
    report.damaged += [(c.name, f"cannot be indexed: {c.detail}") for c in unindexed
                       if not files or (c.last_lsn > base_lsn and c.first_lsn <= files[-1].last_lsn)]
    unbound = set((await anyio.to_thread.run_sync(build_timeline, source.catalog, ident)).unbound_snapshots)
    report.damaged += [(f.name, "the snapshot does not match the log at its LSN (its chain digest differs)")
                       for f in files if f.name in unbound]
    files = [f for f in files if f.name not in unbound]
    report.source_holes = _holes(files, base_lsn)
    total = sum(f.size for f in files)
    done = 0
    previous: SegmentMeta | None = None
    async with staging_dir(target) as staging:
        for file in files:
            if progress:
                progress("copy", done, total)
            meta = await _copy_file(source, target, file, staging, previous, ident, report, say)
            done += file.size
            if file.kind == "segment":
                previous = meta
        if progress:
            progress("copy", total, total)
    if mark is not None and options.until_lsn is None and options.until_ns is None:
        held = max((f.last_lsn for f in files), default=ident.first_lsn - 1)
        report.watermark = await _copy_watermark(target, mark, held, report)
    await target.sync()
    await anyio.to_thread.run_sync(_record_verified, target, files, {*report.copied, *report.present})
    timeline = await anyio.to_thread.run_sync(build_timeline, target.catalog, ident)
    report.windows, report.holes = timeline.windows, timeline.holes
    report.seconds = time.monotonic() - started
    return report


async def _copy_file(source: Repository, target: Repository, file: RepoFile, staging: str,
                     previous: SegmentMeta | None, ident: RepoIdentity, report: CopyReport,
                     say: Say | None) -> SegmentMeta | None:
    """Verify one file of the source and publish it at the target (or find it there already).

    Returns the segment's meta when it is good (None for a snapshot, or a file that failed).
    """
    async with local_copy(source, file.object_name, staging) as src:
        meta, finding = await anyio.to_thread.run_sync(check_file, file, src, source.segment_keys)
        if finding is None and meta is not None:
            problem = _chain_problem(meta, previous, ident)
            if problem is not None:
                report.damaged.append((file.name, problem))
                return None
        if finding is not None:
            report.damaged.append((file.name, finding.message))
            if say:
                say(f"{source.url}/{file.object_name} fails its checks ({finding.message}); not copied")
            return None
        if await target.storage.stat(file.object_name) is None:
            try:
                await target.storage.publish_file(file.object_name, local_path_of(src))
                report.copied.append(file.name)
                report.bytes_copied += src.size
                return meta
            except ObjectExists:
                pass  # published meanwhile (another copy at work): compared below
        async with local_copy(target, file.object_name, staging) as there:
            same = there.size == src.size and \
                await anyio.to_thread.run_sync(file_digest, there) == await anyio.to_thread.run_sync(file_digest, src)
        if same:
            report.present.append(file.name)
            return meta
        report.differing.append(file.name)
        if say:
            say(f"{target.url}/{file.object_name} differs from the verified copy at {source.url}; left as it is")
        return meta


def _chain_problem(meta: SegmentMeta, previous: SegmentMeta | None, ident: RepoIdentity) -> str | None:
    """Why the segment does not continue the chain (the previous segment's, or the history's start), or None."""
    if previous is not None and meta.first_lsn == previous.last_lsn + 1:
        problems = check_chain([previous, meta])
    elif meta.first_lsn == ident.first_lsn:
        problems = check_chain([meta], ident.start_chain_digest)
    else:
        return None  # after a hole or a base snapshot: its link is checked by the target's timeline
    return problems[0].message if problems else None


def _record_verified(target: Repository, files: list[RepoFile], verified: set[str]) -> None:
    """Record at the target's catalog that the files copied (or found equal) passed a full check."""
    now = time.time_ns()
    target.catalog.record_files(FileCheck(f.name, f.kind, f.first_lsn, f.last_lsn, "ok", "", now, "copy")
                                for f in files if f.name in verified)


async def _copy_watermark(target: Repository, mark: Watermark, held: int, report: CopyReport) -> bool:
    """Publish the source's watermark at the target when the target holds every commit through it."""
    if mark.lsn > held or report.differing or report.damaged or report.source_holes:
        return False
    current = await target.read_watermark()
    if current is not None and (current.lsn, current.complete_through_ns) >= (mark.lsn, mark.complete_through_ns):
        return False
    await target.write_watermark(mark)
    return True
