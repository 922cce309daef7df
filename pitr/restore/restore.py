"""Restore to any moment: plan, verify what will be read, build aside, then publish the directory."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial

import anyio

from pitr.errors import CorruptData, HistoryGap, InvalidArgument, OutsideWindow, PitrError, file_error
from pitr.repo import layout
from pitr.repo.repository import Repository
from pitr.restore.base import BaseDamaged, base_checked_as_read, next_base
from pitr.restore.destination import (
    INCOMPLETE_MARK,
    Replacement,
    check_destination,
    hold_writer_lock,
    lock_staging,
    make_private,
    remove_stale_staging,
    staging_prefix,
)
from pitr.restore.engine import RestoreResult, build_state
from pitr.restore.options import RestoreOptions
from pitr.restore.plan import RestorePlan, SkippedBase, plan_restore
from pitr.verify.checks import Finding, chain_findings, check_segment, check_snapshot
from segments import SegmentsError
from segments.block_seal import SegmentKeys
from segments.fsutil import fsync_dir, makedirs_private
from segments.snapshot import read_header
from segments.source import RangeSource

Progress = Callable[[str, int, int], None]
Say = Callable[[str], None]
__all__ = ["INCOMPLETE_MARK", "absolute", "check_destination", "open_base", "publish_restored", "restore"]


async def _fetch(repos: Sequence[Repository], object_name: str, check: Callable[[RangeSource], Finding | None] | None,
                 say: Say | None) -> RangeSource:
    """Open `object_name` from the first repository holding a copy that passes `check`."""
    problems = []
    for i, repo in enumerate(repos):
        more = i + 1 < len(repos)
        try:
            source = await repo.open_source(object_name)
        except PitrError as exc:
            problems.append(f"{repo.url}: {exc}")
            if say and more:
                say(f"{repo.url}/{object_name} cannot be read ({exc}); trying the next repository")
            continue
        if check is not None:
            try:
                finding = await anyio.to_thread.run_sync(check, source)
            except BaseException:
                source.close()
                raise
            if finding is not None:
                problems.append(f"{repo.url}: {_describe(finding)}")
                source.close()
                if say and more:
                    say(f"{repo.url}/{object_name} is damaged; trying the next repository")
                continue
        return source
    where = "no repository holds a valid copy of" if len(repos) > 1 else "cannot use"
    raise CorruptData(f"{where} {object_name}: " + "; ".join(problems), path=object_name,
                      hint="run pitr verify to see what remains restorable")


def _describe(finding: Finding) -> str:
    """A finding as one line for a person: what is wrong, and where."""
    where = []
    if finding.offset is not None and f"offset {finding.offset}" not in finding.message:
        where.append(f"offset {finding.offset}")
    if finding.lsn is not None and f"LSN {finding.lsn}" not in finding.message:
        where.append(f"LSN {finding.lsn}")
    return finding.message + (f" ({', '.join(where)})" if where else "")


def _check_snapshot(full: bool, tables: bool, keys: SegmentKeys | None, source: RangeSource) -> Finding | None:
    """`full`: verified whole; `tables`: header, footer, index (and a sealed file's key table), the
    blocks to be checked as the build reads them (`pitr.restore.base`); else the header only."""
    if full or tables:  # an encrypted repository's `keys` open the sealed blocks (and refuse a plaintext snapshot)
        return check_snapshot(source.name, source, full=full, keys=keys)
    try:
        read_header(source)
    except SegmentsError as exc:
        return Finding(source.name, f"unreadable snapshot header: {exc}")
    return None


async def open_base(repos: Sequence[Repository], plan: RestorePlan, *, verify: bool, explicit: bool,
                    say: Say | None, planned_from: Repository | None = None,
                    checked_as_read: bool = False) -> tuple[RestorePlan, RangeSource | None]:
    """Open the plan's base snapshot; a damaged one makes the restore fall back to the next older base.

    Returns the plan actually used (its `skipped` lists the bases passed over)
    and the open snapshot (None for the start of the history). With an
    `explicit` base there is no fallback. When no base can be read, the
    CorruptData raised names every file tried. `planned_from` is the
    repository whose catalog made the plan (the first one by default). With `checked_as_read`
    (`pitr.restore.base.base_checked_as_read`) a verified base's blocks are left to the build.
    """
    skipped: list[SkippedBase] = list(plan.skipped)
    while True:
        if plan.snapshot is None:
            return replace(plan, skipped=tuple(skipped)), None
        name = layout.snapshot_object(plan.snapshot.name)
        try:
            keys = repos[0].segment_keys if len(repos) == 1 else None  # an encrypted repository is restored alone
            check = partial(_check_snapshot, verify and not checked_as_read, verify and checked_as_read, keys)
            source = await _fetch(repos, name, check, say)
            return replace(plan, skipped=tuple(skipped)), source
        except CorruptData as exc:
            plan = await next_base(planned_from or repos[0], plan, exc, skipped, explicit=explicit, say=say)


async def _open_segments(repos: Sequence[Repository], plan: RestorePlan, verify: bool,
                         say: Say | None, progress: Progress | None = None) -> list[RangeSource]:
    """Open every segment the plan replays, from the first repository holding a valid copy of it.

    From one repository the segments are verified as the replay reads them (`replay_log`), so
    here only their tables and chain are checked. With several, each is verified whole before
    it is chosen, so that a damaged copy is passed over for another before anything is read.
    """
    sources: list[RangeSource] = []
    verify_first = verify and len(repos) > 1
    planned, verified = sum(seg.size for seg in plan.segments), 0  # progress in bytes, as the restore's own
    try:
        for seg in plan.segments:
            if verify_first and progress is not None:
                progress("verify", verified, planned)
            verified += seg.size
            check = partial(_check_segment_full, seg.name) if verify_first else None
            sources.append(await _fetch(repos, layout.segment_object(seg.name), check, say))
        if verify:
            metas = []
            for seg, src in zip(plan.segments, sources, strict=True):
                meta, finding = await anyio.to_thread.run_sync(partial(check_segment, seg.name, src, full=False))
                if finding is not None and not verify_first:
                    raise CorruptData(f"cannot use {seg.name}: {_describe(finding)}",
                                      path=layout.segment_object(seg.name),
                                      hint="run pitr verify to see what remains restorable")
                if meta is not None:
                    metas.append((seg.name, meta))
            start = plan.snapshot.chain_digest if plan.snapshot is not None else plan.identity.start_chain_digest
            problems = list(chain_findings(metas, None))
            if metas and plan.snapshot is None and metas[0][1].header.prev_chain_digest != start:
                problems.append(chain_findings(metas[:1], start)[0])
            if problems:
                raise CorruptData("the log to replay does not chain: " + "; ".join(p.message for p in problems),
                                  path=layout.segment_object(problems[0].file))
    except BaseException:
        for src in sources:
            src.close()
        raise
    return sources


async def _best_plan(repos: list[Repository], options: RestoreOptions,
                     now_ns: int) -> tuple[RestorePlan, Repository]:
    """Plan from every repository's catalog and take the best: one copy may lack files the other has.

    For --latest the plan reaching the highest LSN wins; otherwise the first
    repository (in the order given) whose windows hold the target.
    """
    plans: list[tuple[RestorePlan, Repository]] = []
    refusal: OutsideWindow | HistoryGap | None = None
    for repo in repos:
        try:
            plans.append((await plan_restore(repo, options.target, base=options.base, now_ns=now_ns), repo))
        except (OutsideWindow, HistoryGap) as exc:  # another copy may hold what this one lacks
            refusal = refusal or exc
            continue
        if not options.target.latest:
            break
    if not plans:
        assert refusal is not None
        raise refusal
    return max(plans, key=lambda p: p[0].target_lsn) if options.target.latest else plans[0]


def _check_segment_full(name: str, source: RangeSource) -> Finding | None:
    return check_segment(name, source, full=True)[1]


def _repo_roots(repos: Sequence[Repository]) -> list[str]:
    roots = []
    for repo in repos:
        identity = repo.local_path(layout.IDENTITY)
        if identity is not None:
            roots.append(os.path.dirname(identity))
    return roots


async def restore(repos: Repository | Sequence[Repository], options: RestoreOptions, *,
                  progress: Progress | None = None, say: Say | None = None,
                  clock: Callable[[], int] = time.time_ns) -> RestorePlan | RestoreResult:
    """Restore the state at `options.target` into `options.dest`.

    Returns the plan for a dry run, else the result. Nothing appears at `dest`
    until the state is complete; with `force`, a non-empty `dest` is replaced
    (see `check_destination` for what is never replaced). `clock` is the
    present: no archive is taken as complete beyond it. With `options.witness`, every repository is
    first checked against the witness's signed checkpoints (`CorruptData` if it does not hold up).
    """
    repo_list = [repos] if isinstance(repos, Repository) else list(repos)
    if not repo_list:
        raise InvalidArgument("restore needs at least one repository")
    dest = absolute(options.dest)
    if len(repo_list) > 1 and any(r.segment_keys is not None for r in repo_list):
        raise InvalidArgument("an encrypted repository is restored from alone: each has its own data key")
    if options.witness is not None:  # a rolled-back repository is refused before anything is planned or built
        from pitr.verify.checkpoints import require_witnessed_all

        await require_witnessed_all(repo_list, options.witness, s3_endpoint=options.witness_s3_endpoint)
    for repo in repo_list:  # files that cannot be indexed are holes in the timeline the plan reads
        await repo.sync()
    plan, planned_from = await _best_plan(repo_list, options, clock())
    roots = _repo_roots(repo_list)
    check = partial(check_destination, dest, force=options.force, replace_foreign=options.replace_foreign,
                    repo_roots=roots)
    replaced = await anyio.to_thread.run_sync(check)  # a dry run refuses what the restore would refuse
    if options.selection is not None:
        return await _restore_selection(planned_from, plan, options, dest, replaced, roots, clock, progress)
    as_read = base_checked_as_read(options.verify, len(repo_list), options.dry_run)
    while True:  # again from an older base when the build finds its base damaged (pitr.restore.base)
        plan, snapshot = await open_base(repo_list, plan, verify=options.verify, explicit=options.base is not None,
                                         say=say, planned_from=planned_from, checked_as_read=as_read)
        if options.dry_run:  # the base it names is the one the restore would use (verified, unless --no-verify)
            if snapshot is not None:
                snapshot.close()
            if replaced is not None:
                plan = replace(plan, notes=(*plan.notes, f"would replace {replaced.describe()}"))
            return plan
        try:
            sources = await _open_segments(repo_list, plan, options.verify, say, progress)
        except BaseException:
            if snapshot is not None:
                snapshot.close()
            raise
        keys = repo_list[0].segment_keys if len(repo_list) == 1 else None
        build = partial(build_state, plan=plan, snapshot=snapshot, segments=sources,
                        name=options.name or plan.identity.name, progress=progress, pause_gc=options.pause_gc,
                        verify=options.verify and len(repo_list) == 1, segment_keys=keys)
        try:
            result = await publish_restored(dest, options.force, build, replace_foreign=options.replace_foreign,
                                            repo_roots=roots)
        except BaseDamaged as exc:
            skipped = list(plan.skipped)
            plan = await next_base(planned_from, plan, exc, skipped, explicit=options.base is not None, say=say)
            plan = replace(plan, skipped=tuple(skipped))
            continue
        finally:
            for src in [snapshot, *sources]:
                if src is not None:
                    src.close()
        return result


async def publish_restored(dest: str, force: bool, build: Callable[[str], RestoreResult], *,
                           replace_foreign: bool = False, repo_roots: Sequence[str] = ()) -> RestoreResult:
    """Run `build(state_dir)` in a hidden staging directory beside `dest`, then move it into place.

    The staging directory (`.DEST.restoring-*`) carries a RESTORE-INCOMPLETE
    file until the build is done and never has `dest`'s name: an interrupted
    restore leaves nothing that looks finished, and the next restore to `dest`
    removes what it left. An existing `dest` is checked again at the moment it
    is replaced, holding its writer lock: it is renamed aside, the new
    directory renamed in, and only then is the old one removed.
    """
    check = partial(check_destination, dest, force=force, replace_foreign=replace_foreign, repo_roots=repo_roots)
    await anyio.to_thread.run_sync(check)
    tmp, fd = await anyio.to_thread.run_sync(_make_workdir, dest)
    try:
        try:
            try:
                result = await anyio.to_thread.run_sync(build, os.path.join(tmp, "state"))
            except OSError as exc:
                raise file_error(exc, os.path.join(tmp, "state"), "write the restored state") from exc
            await anyio.to_thread.run_sync(_finish_workdir, tmp)
            replaced, notes = await anyio.to_thread.run_sync(_publish_directory, tmp, dest, check)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(lambda: shutil.rmtree(tmp, ignore_errors=True))
            raise
    finally:
        os.close(fd)
    return replace(result, dest=dest, replaced=replaced, notes=(*result.notes, *notes))


async def _restore_selection(repo: Repository, plan: RestorePlan, options: RestoreOptions, dest: str,
                             replaced: Replacement | None, roots: Sequence[str], clock: Callable[[], int],
                             progress: Progress | None) -> RestorePlan | RestoreResult:
    """Only the selected keys: read through the key index, the base's blocks under the prefixes and
    the log since the base (`pitr.restore.prefix`), then published like a full restore."""
    from pitr.restore.prefix import read_selection, write_selected_state  # reads through pitr.audit

    selection = options.selection
    assert selection is not None
    if options.dry_run:
        notes = [f"would restore only {selection.describe()}"]
        if replaced is not None:
            notes.append(f"would replace {replaced.describe()}")
        return replace(plan, notes=(*plan.notes, *notes))
    # the plan's segments, their tables and chain checked (no whole-file read): only for prefixes
    sources = await _open_segments([repo], plan, options.verify, None) if selection.prefixes else []
    try:
        state = await read_selection(repo, plan, selection, sources, progress)
    finally:
        for source in sources:
            source.close()
    name = options.name or plan.identity.name
    return await publish_restored(
        dest, options.force,
        lambda state_dir: write_selected_state(state_dir, plan, state, selection, name=name, clock=clock),
        replace_foreign=options.replace_foreign, repo_roots=roots)


def absolute(path: str) -> str:
    """`path` made absolute (no filesystem access)."""
    return os.path.normpath(os.path.join(os.getcwd(), path))


def _make_workdir(dest: str) -> tuple[str, int]:
    """A new staging directory beside `dest`, marked and locked; stale ones of earlier restores go first."""
    parent = os.path.dirname(dest)
    try:
        makedirs_private(parent)
        remove_stale_staging(dest)
        tmp = tempfile.mkdtemp(prefix=staging_prefix(dest), dir=parent)
        fd = lock_staging(tmp)
        fh = os.open(os.path.join(tmp, INCOMPLETE_MARK), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fh, "w") as mark:
            mark.write("this directory is an unfinished restore; it is safe to delete\n")
    except OSError as exc:
        raise file_error(exc, parent, f"create the staging directory of the restore to {dest}") from exc
    return tmp, fd


def _finish_workdir(tmp: str) -> None:
    try:
        os.makedirs(os.path.join(tmp, "wal"), mode=0o700)
        make_private(tmp)
        os.unlink(os.path.join(tmp, INCOMPLETE_MARK))
        fsync_dir(tmp)
    except OSError as exc:
        raise file_error(exc, tmp, "finish the restored directory") from exc


def _publish_directory(tmp: str, dest: str, check: Callable[[], Replacement | None]
                       ) -> tuple[Replacement | None, list[str]]:
    """Move the finished `tmp` to `dest`; returns what was replaced and anything the user must know."""
    parent = os.path.dirname(dest)
    replaced = check()  # again: the destination may have changed during the build
    lock = hold_writer_lock(dest) if os.path.isdir(dest) else None
    old = None
    notes: list[str] = []
    try:
        if os.path.exists(dest):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.replaced-", dir=parent)
            os.rmdir(old)
            os.rename(dest, old)
        try:
            os.rename(tmp, dest)
        except OSError:
            if old is not None:
                os.rename(old, dest)  # put the old directory back
            raise
        fsync_dir(parent)
    except OSError as exc:
        raise file_error(exc, dest, "move the restored directory into place") from exc
    finally:
        if lock is not None:
            lock.release()
    if old is not None:
        try:
            shutil.rmtree(old)
        except OSError as exc:
            notes.append(f"the replaced directory was kept at {old}: cannot remove it ({exc}); delete it "
                         "yourself")
    return replaced, notes

