"""Repairing a repository from a healthy copy of the same history, writing nothing twice, deleting nothing.

Damage is found the way `pitr verify` finds it (a full verification: every
block, record, digest, chain link and snapshot binding, and the holes of the
timeline). For each damaged file and each hole the healthy repository's
copies are fully verified on the local bytes that are then published:

- a damaged file is superseded by a verified copy published under a new name
  (`pitr.transfer.repair_plan`): the next repair generation of its own name
  (``NAME.r000001.seg``), or the healthy copy's wider segment covering its LSNs,
  or the healthy copy's pieces merged into one such segment. The damaged file is
  left where it is, never read again (`pitr.repo.live`), and deleted by `pitr
  cleanup` (which reports when Object Lock allows it);
- a hole is filled with the healthy repository's segments holding its LSNs;
- every `keys/` wrap the healthy repository holds (keys `pitr key rotate` added) and the repaired one
  lacks is published there, as `pitr copy` does, so the repaired repository opens under every key the
  healthy one opens under;
- the catalog then catches up (the superseded files' rows and verify results go, the new files are
  indexed) and records the new files verified, so every command stops reporting the damage.

A damaged file whose healthy copy is byte for byte the same (a snapshot whose
binding fails because the log around it is damaged) is left in place.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from pitr.errors import CatalogDamaged, ForeignRepository, Gap, Window
from pitr.repo import layout
from pitr.repo.keyring import copy_wraps
from pitr.repo.repository import Repository
from pitr.timeline import build_timeline
from pitr.transfer.files import RepoFile, check_file, file_digest, local_copy, local_path_of, staging_dir
from pitr.transfer.repair_plan import Publication, merged_copy, plan_publications
from pitr.verify import Finding, verify_repository
from segments.source import FileSource

Progress = Callable[[str, int, int], None]
Say = Callable[[str], None]
DAMAGED_DIR = ".damaged/"  # where repairs before write-once repair kept damaged bytes; nothing writes it now


@dataclass(slots=True)
class RepairReport:
    """What a repair replaced, filled in and could not repair, and the repository's windows afterwards."""

    repository: str
    healthy: str
    found: list[Finding] = field(default_factory=list)  # what verify found before the repair
    holes_found: list[Gap] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # damaged files superseded by verified copies
    filled: list[str] = field(default_factory=list)  # files published to fill holes
    published: list[tuple[str, str]] = field(default_factory=list)  # (damaged file or hole, the new file)
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


async def repair_repository(repo: Repository, healthy: Repository, *, progress: Progress | None = None,
                            say: Say | None = None) -> RepairReport:
    """Supersede `repo`'s damaged files and fill its holes with verified copies from `healthy`."""
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
    checks = {c.name: c for c in await anyio.to_thread.run_sync(repo.catalog.file_checks)}
    listed = [i.name.rpartition("/")[2] for p in (layout.SEGMENTS, layout.SNAPSHOTS) for i in await repo.storage.list(p)]
    todo, report.unrepaired = plan_publications(
        await anyio.to_thread.run_sync(healthy.catalog.segments),
        await anyio.to_thread.run_sync(healthy.catalog.snapshots),
        [(f.file, None if (c := checks.get(f.file)) is None else (c.first_lsn, c.last_lsn)) for f in before.findings
         if f.kind not in ("missing", "superseded")],
        before.holes, listed)
    touched: list[str] = []
    async with staging_dir(repo) as staging:
        for i, publication in enumerate(todo):
            if progress:
                progress("repair", i, len(todo))
            if await _publish(repo, healthy, publication, staging, report, say):
                touched.append(publication.name)
    await repo.sync()  # the superseded files' rows and verify results go, the new files are indexed
    if touched:
        await verify_repository(repo, mode="full", files=touched)  # records the new files as verified
    timeline = await anyio.to_thread.run_sync(build_timeline, repo.catalog, ident)
    report.windows, report.holes = timeline.windows, timeline.holes
    report.still_damaged = [c.name for c in timeline.damaged] + list(timeline.unbound_snapshots)
    report.seconds = time.monotonic() - started
    return report


async def _publish(repo: Repository, healthy: Repository, publication: Publication, staging: str,
                   report: RepairReport, say: Say | None) -> bool:
    """Publish one verified file (a healthy copy, or the healthy pieces merged) under its new name in `repo`;
    False when it is not done (the healthy copy fails its checks, or is the damaged file's very bytes)."""
    new = RepoFile(publication.name, publication.kind, publication.first_lsn, publication.last_lsn, 0)
    if len(publication.sources) == 1:
        async with local_copy(healthy, publication.sources[0].object_name, staging) as good:
            return await _check_and_publish(repo, healthy, publication, new, good, staging, report, say)
    async with merged_copy(healthy, publication.sources, staging) as (good, problem):
        if good is None:
            report.unrepaired.append((", ".join(publication.supersedes) or publication.what, problem))
            return False
        return await _check_and_publish(repo, healthy, publication, new, good, staging, report, say)


async def _check_and_publish(repo: Repository, healthy: Repository, publication: Publication, new: RepoFile,
                             good: FileSource, staging: str, report: RepairReport, say: Say | None) -> bool:
    """Check `good` in full and publish it as `new`, unless it is the damaged file's very bytes."""
    meta, finding = await anyio.to_thread.run_sync(check_file, new, good, healthy.segment_keys)
    if finding is None and meta is not None and (meta.first_lsn, meta.last_lsn) != (new.first_lsn, new.last_lsn):
        finding = Finding(new.name, f"holds LSNs {meta.first_lsn}..{meta.last_lsn}, not the "
                                    f"{new.first_lsn}..{new.last_lsn} its new name says")
    if finding is not None:
        report.unrepaired.append((", ".join(publication.supersedes) or publication.what,
                                  f"the healthy repository's copy is damaged too: {finding.message}"))
        return False
    damaged = publication.supersedes
    kind = layout.segment_object if publication.kind == "segment" else layout.snapshot_object
    if len(damaged) == 1 and publication.same_range and await repo.storage.stat(kind(damaged[0])) is not None:
        async with local_copy(repo, kind(damaged[0]), staging) as bad:
            if bad.size == good.size and await anyio.to_thread.run_sync(file_digest, bad) == \
                    await anyio.to_thread.run_sync(file_digest, good):
                report.kept.append(damaged[0])  # e.g. a snapshot unbound by the damaged log around it
                return False
    await repo.storage.publish_file(new.object_name, local_path_of(good))  # a new name: never an overwrite
    report.replaced += damaged
    if not damaged:
        report.filled.append(new.name)
    for name in damaged or [publication.what]:
        report.published.append((name, new.name))
        if say and damaged:
            say(f"{repo.url}: {name} superseded by the verified copy {new.name} (cleanup deletes the damaged one)")
    return True
