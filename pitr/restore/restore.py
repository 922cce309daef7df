"""Restore to any moment: plan, verify what will be read, build aside, then publish the directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from functools import partial

import anyio

from pitr.errors import CorruptData, DestinationExists, InvalidArgument, OutsideWindow
from pitr.repo import layout
from pitr.repo.repository import Repository
from pitr.restore.engine import RestoreResult, build_state
from pitr.restore.options import RestoreOptions
from pitr.restore.plan import RestorePlan, plan_restore
from pitr.verify.checks import Finding, chain_findings, check_segment, check_snapshot
from segments.fsutil import fsync_dir
from segments.source import RangeSource

Progress = Callable[[str, int, int], None]
Say = Callable[[str], None]
INCOMPLETE_MARK = "RESTORE-INCOMPLETE"


def check_destination(dest: str, force: bool) -> None:
    """Refuse a non-empty destination unless `force`; refuse a file in its place."""
    if os.path.exists(dest):
        if not os.path.isdir(dest):
            raise DestinationExists(f"{dest} exists and is not a directory")
        if os.listdir(dest) and not force:
            raise DestinationExists(f"{dest} is not empty; pass --force (force=True) to replace it")


async def _open_sources(repos: Sequence[Repository], plan: RestorePlan, verify: bool,
                        say: Say | None, progress: Progress | None = None,
                        ) -> tuple[RangeSource | None, list[RangeSource]]:
    """Open every file the plan reads, from the first repository holding a valid copy of it."""
    total = len(plan.segments) + (1 if plan.snapshot is not None else 0)
    opened = 0

    async def fetch(object_name: str, check: Callable[[RangeSource], object]) -> RangeSource:
        nonlocal opened
        problems = []
        for repo in repos:
            try:
                source = await repo.open_source(object_name)
            except Exception as exc:  # noqa: BLE001 - any failure means: try the next repository
                problems.append(f"{repo.url}: {exc}")
                continue
            if verify:
                if progress is not None:
                    progress("verify", opened, total)
                finding = await anyio.to_thread.run_sync(check, source)
                if finding is not None:
                    problems.append(f"{repo.url}: {finding}")
                    source.close()
                    if say:
                        say(f"{repo.url}/{object_name} is damaged; trying the next repository")
                    continue
            opened += 1
            return source
        raise CorruptData(f"no repository holds a valid copy of {object_name}: " + "; ".join(problems),
                          path=object_name, hint="run pitr verify to see what remains restorable")

    snapshot = None
    if plan.snapshot is not None:
        snapshot = await fetch(layout.snapshot_object(plan.snapshot.name),
                               lambda s: check_snapshot(s.name, s, full=True))
    sources = []
    for seg in plan.segments:
        sources.append(await fetch(layout.segment_object(seg.name), partial(_check_segment_full, seg.name)))
    if verify:
        metas = []
        for seg, src in zip(plan.segments, sources, strict=True):
            meta, _ = check_segment(seg.name, src, full=False)
            if meta is not None:
                metas.append((seg.name, meta))
        start = plan.snapshot.chain_digest if plan.snapshot is not None else plan.identity.start_chain_digest
        problems = [f for f in chain_findings(metas, None)]
        if metas and plan.snapshot is None and metas[0][1].header.prev_chain_digest != start:
            problems.append(chain_findings(metas[:1], start)[0])
        if problems:
            raise CorruptData("the log to replay does not chain: " + "; ".join(p.message for p in problems))
    return snapshot, sources


async def _best_plan(repos: list[Repository], options: RestoreOptions) -> RestorePlan:
    """Plan from every repository's catalog and take the best: one copy may lack files the other has.

    For --latest the plan reaching the highest LSN wins; otherwise the first
    repository (in the order given) whose windows hold the target.
    """
    plans: list[RestorePlan] = []
    refusal: OutsideWindow | None = None
    for repo in repos:
        try:
            plans.append(await plan_restore(repo, options.target))
        except OutsideWindow as exc:
            refusal = refusal or exc
            continue
        if not options.target.latest:
            break
    if not plans:
        assert refusal is not None
        raise refusal
    return max(plans, key=lambda p: p.target_lsn) if options.target.latest else plans[0]


def _check_segment_full(name: str, source: RangeSource) -> Finding | None:
    return check_segment(name, source, full=True)[1]


async def restore(repos: Repository | Sequence[Repository], options: RestoreOptions, *,
                  progress: Progress | None = None, say: Say | None = None) -> RestorePlan | RestoreResult:
    """Restore the state at `options.target` into `options.dest`.

    Returns the plan for a dry run, else the result. Nothing appears at `dest`
    until the state is complete; with `force`, a non-empty `dest` is replaced.
    """
    repo_list = [repos] if isinstance(repos, Repository) else list(repos)
    if not repo_list:
        raise InvalidArgument("restore needs at least one repository")
    dest = absolute(options.dest)
    reports = [await repo.sync() for repo in repo_list]
    broken = sorted({name for r in reports for name, _why in r.broken})
    if broken and options.target.latest and all(r.broken for r in reports):
        raise CorruptData(
            f"the archive's newest point cannot be restored: damaged files {', '.join(broken)}",
            path=broken[0], hint="run pitr verify; restore to an earlier --to/--lsn inside a window it prints")
    plan = await _best_plan(repo_list, options)
    if options.dry_run:
        return plan
    await anyio.to_thread.run_sync(check_destination, dest, options.force)
    snapshot, sources = await _open_sources(repo_list, plan, options.verify, say, progress)
    name = options.name or plan.identity.name
    try:
        result = await publish_restored(
            dest, options.force,
            lambda state_dir: build_state(state_dir, plan, snapshot, sources, name=name, progress=progress))
    finally:
        for src in [snapshot, *sources]:
            if src is not None:
                src.close()
    return result


async def publish_restored(dest: str, force: bool, build: Callable[[str], RestoreResult]) -> RestoreResult:
    """Run `build(state_dir)` in a hidden temporary directory beside `dest`, then move it into place.

    The temporary directory carries a RESTORE-INCOMPLETE file until the build
    is done, and never has `dest`'s name: an interrupted restore leaves nothing
    that looks finished.
    """
    tmp = await anyio.to_thread.run_sync(_make_workdir, dest)
    try:
        result = await anyio.to_thread.run_sync(build, os.path.join(tmp, "state"))
        await anyio.to_thread.run_sync(_finish_workdir, tmp, dest, force)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(tmp, ignore_errors=True))
        raise
    return RestoreResult(dest, result.store_id, result.target_lsn, result.target_ts_ns, result.base_lsn,
                         result.commits_replayed, result.keys, result.expired_dropped, result.seconds,
                         result.peak_rss_bytes)


def absolute(path: str) -> str:
    """`path` made absolute (no filesystem access)."""
    return os.path.normpath(os.path.join(os.getcwd(), path))


def _make_workdir(dest: str) -> str:
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.restoring-", dir=parent)
    with open(os.path.join(tmp, INCOMPLETE_MARK), "w") as fh:
        fh.write("this directory is an unfinished restore; it is safe to delete\n")
    return tmp


def _finish_workdir(tmp: str, dest: str, force: bool) -> None:
    os.makedirs(os.path.join(tmp, "wal"))
    os.unlink(os.path.join(tmp, INCOMPLETE_MARK))
    fsync_dir(tmp)
    _publish_directory(tmp, dest, force)


def _publish_directory(tmp: str, dest: str, force: bool) -> None:
    parent = os.path.dirname(dest)
    old = None
    if os.path.exists(dest):
        if os.listdir(dest) and not force:
            raise DestinationExists(f"{dest} is not empty; pass --force to replace it")
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.replaced-", dir=parent)
        os.rmdir(old)
        os.rename(dest, old)
    os.rename(tmp, dest)
    fsync_dir(parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
