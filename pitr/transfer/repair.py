"""Repairing a repository from a healthy copy of the same history.

Damage is found the way `pitr verify` finds it (a full verification: every
block, record, digest, chain link and snapshot binding, and the holes of the
timeline). For each damaged file and each hole the healthy repository's
copies are fully verified on the local bytes that are then published:

- a damaged file is first moved aside to ``.damaged/<its name>.<UTC time>``
  in the same repository (copied there, then deleted), never overwritten, and
  only then is the verified copy published under its name;
- a hole is filled with the healthy repository's segments holding its LSNs;
- every `keys/` wrap the healthy repository holds (keys `pitr key rotate` added) and the repaired one
  lacks is published there, as `pitr copy` does, so the repaired repository opens under every key the
  healthy one opens under;
- the catalog forgets the damaged file's rows and its verify result, indexes
  the new files, and records them verified, so every command stops reporting
  the hole.

A damaged file whose healthy copy is byte for byte the same (a snapshot whose
binding fails because the log around it is damaged) is left in place.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from pitr.catalog.entries import SegmentEntry, SnapshotEntry
from pitr.errors import CatalogDamaged, ForeignRepository, Gap, Window
from pitr.repo.keyring import copy_wraps
from pitr.repo.repository import Repository
from pitr.timefmt import format_time
from pitr.timeline import build_timeline
from pitr.transfer.files import RepoFile, check_file, file_digest, local_copy, local_path_of, staging_dir
from pitr.verify import Finding, verify_repository

Progress = Callable[[str, int, int], None]
Say = Callable[[str], None]
DAMAGED_DIR = ".damaged/"


@dataclass(slots=True)
class RepairReport:
    """What a repair replaced, filled in and could not repair, and the repository's windows afterwards."""

    repository: str
    healthy: str
    found: list[Finding] = field(default_factory=list)  # what verify found before the repair
    holes_found: list[Gap] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # damaged files replaced by verified copies
    filled: list[str] = field(default_factory=list)  # files published to fill holes
    moved_aside: list[tuple[str, str]] = field(default_factory=list)  # (file, where its damaged bytes went)
    unrepaired: list[tuple[str, str]] = field(default_factory=list)  # (file or LSN range, why)
    kept: list[str] = field(default_factory=list)  # named by verify, but the same bytes as the healthy copy
    keys_copied: list[str] = field(default_factory=list)  # `keys/` wraps published from the healthy repository
    still_damaged: list[str] = field(default_factory=list)  # after the repair: not indexed, damaged or unbound
    windows: list[Window] = field(default_factory=list)
    holes: list[Gap] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.unrepaired and not self.holes and not self.still_damaged and bool(self.windows)


def aside_name(object_name: str, now_ns: int) -> str:
    """Where a damaged file's bytes are kept: ``.damaged/segments/NAME.20261202T070000123456789Z``."""
    stamp = format_time(now_ns).replace("-", "").replace(":", "").replace(".", "")
    return f"{DAMAGED_DIR}{object_name}.{stamp}"


def _healthy_files(segments: list[SegmentEntry], snapshots: list[SnapshotEntry], damaged: dict[str, RepoFile],
                   holes: list[Gap], present: set[str]
                   ) -> tuple[list[tuple[RepoFile, bool]], list[tuple[str, str]], list[str]]:
    """The healthy repository's files to publish: (file, replaces a damaged one); what nothing can repair;
    and the damaged segments the healthy copy holds only inside differently cut segments."""
    by_name = {s.name: RepoFile(s.name, "segment", s.first_lsn, s.last_lsn, s.size) for s in segments}
    by_name |= {s.name: RepoFile(s.name, "snapshot", s.lsn, s.lsn, s.size) for s in snapshots}
    chosen: dict[str, tuple[RepoFile, bool]] = {}
    missing: list[tuple[str, str]] = []
    superseded: list[str] = []
    ranges: list[tuple[int, int, str]] = [(h.first_lsn, h.last_lsn, f"LSN {h.first_lsn}..{h.last_lsn}") for h in holes]
    for name, file in damaged.items():
        if name in by_name:
            chosen[name] = (by_name[name], True)
        elif file.kind == "segment" and file.last_lsn >= file.first_lsn:  # merged or split differently there
            ranges.append((file.first_lsn, file.last_lsn, name))
            superseded.append(name)
        else:
            missing.append((name, f"the healthy repository holds no copy of this {file.kind}"))
    for first, last, what in ranges:
        cover = [f for f in by_name.values() if f.kind == "segment" and f.first_lsn <= last and first <= f.last_lsn]
        reach = first - 1
        for f in sorted(cover, key=lambda f: f.first_lsn):
            if f.first_lsn <= reach + 1:
                reach = max(reach, f.last_lsn)
            if f.name not in present and f.name not in chosen:
                chosen[f.name] = (f, False)
        if reach < last:
            missing.append((what, f"the healthy repository holds no segment with LSNs {reach + 1}..{last}"))
    order = sorted(chosen.values(), key=lambda fr: (fr[0].first_lsn, fr[0].kind != "segment"))
    return order, missing, superseded


async def repair_repository(repo: Repository, healthy: Repository, *, progress: Progress | None = None,
                            say: Say | None = None) -> RepairReport:
    """Replace `repo`'s damaged files and fill its holes with verified copies from `healthy`."""
    started = time.monotonic()
    report = RepairReport(repo.url, healthy.url)
    ident, healthy_ident = await repo.require_identity(), await healthy.require_identity()
    if ident != healthy_ident:
        raise ForeignRepository(
            f"{healthy.url} holds the history of store {healthy_ident.store_id} ({healthy_ident.name}, from LSN "
            f"{healthy_ident.first_lsn}), not that of {repo.url}: store {ident.store_id} ({ident.name}, from LSN "
            f"{ident.first_lsn}); nothing was changed: repair from a copy of the same repository")
    report.keys_copied = await copy_wraps(healthy, repo)  # each checked to be this store's; none replaced
    before = await verify_repository(repo, mode="full", progress=progress)
    if before.catalog_damaged:
        raise CatalogDamaged(f"{repo.url}: the catalog is damaged, so the damage in the files cannot be told "
                             "apart; nothing was changed", path=repo.catalog.path,
                             hint=f"run pitr reindex --repo {repo.url}, then pitr repair again")
    report.found, report.holes_found = list(before.findings), list(before.holes)
    await healthy.sync()
    ours = {s.name: s for s in await anyio.to_thread.run_sync(repo.catalog.segments)}
    our_snaps = {s.name: s for s in await anyio.to_thread.run_sync(repo.catalog.snapshots)}
    checks = {c.name: c for c in await anyio.to_thread.run_sync(repo.catalog.file_checks)}
    damaged = {}
    for f in before.findings:
        kind = "snapshot" if f.file.endswith(".snap") else "segment"
        check = checks.get(f.file)
        first, last = (check.first_lsn, check.last_lsn) if check is not None else (0, -1)
        damaged[f.file] = RepoFile(f.file, kind, first, last, 0)
    listed = {i.name.rpartition("/")[2] for p in ("segments/", "snapshots/") for i in await repo.storage.list(p)}
    todo, report.unrepaired, superseded = _healthy_files(
        await anyio.to_thread.run_sync(healthy.catalog.segments),
        await anyio.to_thread.run_sync(healthy.catalog.snapshots), damaged, before.holes, listed)
    touched: list[str] = []
    async with staging_dir(repo) as staging:
        for i, (file, replaces) in enumerate(todo):
            if progress:
                progress("repair", i, len(todo))
            if await _repair_file(repo, healthy, file, replaces and file.name in listed, staging, report, say):
                touched.append(file.name)
                await anyio.to_thread.run_sync(_forget, repo, file, ours.get(file.name), our_snaps.get(file.name))
        unrepaired = {what for what, _why in report.unrepaired}
        for name in superseded:  # the healthy copy's segments now hold its LSNs: it must not stay beside them
            if name in listed and name not in unrepaired:
                await _move_aside(repo, damaged[name], staging, report, say)
                await anyio.to_thread.run_sync(_forget, repo, damaged[name], ours.get(name), None)
    await repo.sync()
    if touched:
        await verify_repository(repo, mode="full", files=touched)  # records the new files as verified
    timeline = await anyio.to_thread.run_sync(build_timeline, repo.catalog, ident)
    report.windows, report.holes = timeline.windows, timeline.holes
    report.still_damaged = [c.name for c in timeline.damaged] + list(timeline.unbound_snapshots)
    report.seconds = time.monotonic() - started
    return report


async def _repair_file(repo: Repository, healthy: Repository, file: RepoFile, replaces: bool, staging: str,
                       report: RepairReport, say: Say | None) -> bool:
    """Publish the healthy copy of one file in `repo`, moving a damaged one aside first; False when not done."""
    async with local_copy(healthy, file.object_name, staging) as good:
        _meta, finding = await anyio.to_thread.run_sync(check_file, file, good, healthy.segment_keys)
        if finding is not None:
            report.unrepaired.append((file.name, f"the healthy repository's copy is damaged too: {finding.message}"))
            return False
        if replaces:
            async with local_copy(repo, file.object_name, staging) as bad:
                if bad.size == good.size and await anyio.to_thread.run_sync(file_digest, bad) == \
                        await anyio.to_thread.run_sync(file_digest, good):
                    report.kept.append(file.name)  # e.g. a snapshot unbound by the damaged log around it
                    return False
            await _move_aside(repo, file, staging, report, say)
        await repo.storage.publish_file(file.object_name, local_path_of(good))
    (report.replaced if replaces else report.filled).append(file.name)
    return True


async def _move_aside(repo: Repository, file: RepoFile, staging: str, report: RepairReport,
                      say: Say | None) -> None:
    """Keep a damaged file's bytes under `.damaged/` (published, so never overwriting), then delete it."""
    aside = aside_name(file.object_name, time.time_ns())
    async with local_copy(repo, file.object_name, staging) as bad:
        await repo.storage.publish_file(aside, local_path_of(bad))
    await repo.delete(file.object_name)
    report.moved_aside.append((file.name, aside))
    if say:
        say(f"{repo.url}/{file.object_name}: damaged copy moved to {aside}")


def _forget(repo: Repository, file: RepoFile, segment: SegmentEntry | None, snapshot: SnapshotEntry | None) -> None:
    """Drop what the catalog knew of the replaced file (a worker-thread call): the next sync indexes it anew."""
    if segment is not None:
        repo.catalog.remove_segment(segment.first_lsn)
    if snapshot is not None:
        repo.catalog.remove_snapshot(snapshot.lsn)
    repo.catalog.forget_file(file.name)
