"""A warm standby: restore the latest state, then keep applying the segments a repository publishes.

    DIR/FOLLOWER   which repository and history the standby follows, and where its chain stands
    DIR/LOCK       held by the follower for as long as it runs (no writer, no promote, no restore over it)

The standby is built as a restore builds a store, first into `.DIR.follow-init` beside it (a
complete restored store that gets its FOLLOWER marker there), then renamed to DIR: a directory
named DIR is always a follower or not there at all. A rerun finds DIR and resumes from its
checkpoint; a leftover `.DIR.follow-init` is finished (with its marker) or removed (without).
While a follower looks at DIR and builds it, it holds an flock on `.DIR.follow-init.lock` beside it
(left in place, holding the PID): a second follower started on the same DIR then is refused at once,
instead of removing the first one's unfinished build or racing it to the rename.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from pitr.datadir.lock import WriterLock, read_holder
from pitr.datadir.markers import ChainAnchor, FollowerMarker, read_follower, write_follower
from pitr.datadir.state import StateDB
from pitr.errors import (
    CorruptData,
    DestinationExists,
    ForeignRepository,
    InvalidArgument,
    ObjectNotFound,
    StoreLocked,
    UnsafeDestination,
    WrongKey,
    file_error,
)
from pitr.follow.apply import Applied, apply_segment, missing_after
from pitr.follow.pending import RESTORE_HINT, Listed, Step, choose_steps, list_segments
from pitr.repo import layout
from pitr.repo.repository import Repository
from pitr.restore import RestoreOptions, RestoreTarget, restore
from pitr.restore.destination import check_destination, hold_writer_lock
from pitr.restore.engine import RestoreResult
from pitr.restore.restore import absolute
from segments.fsutil import fsync_dir

# Seconds between looks at the repository when nothing new was found (docs/decisions.md "How often a
# standby looks"): a look at a local repository is a directory listing; at an object store it is
# paid requests (LIST, GET of the watermark), so it looks less often there.
LOCAL_INTERVAL = 0.1
REMOTE_INTERVAL = 1.0
INIT_SUFFIX = ".follow-init"
Progress = Callable[[str, int, int], None]
Say = Callable[[str], None]
Trace = Callable[[dict[str, object]], None]  # one record per look at the repository (see _follow_loop)


@dataclass(frozen=True, kw_only=True, slots=True)
class FollowOptions:
    """Where the standby lives and how it follows: every `interval` seconds; with `catch_up`, it stops
    once it holds everything the repository holds. `force` lets the first restore replace a store at
    `dest` that is not a follower (never one a live process holds)."""

    dest: str
    interval: float | None = None  # None: LOCAL_INTERVAL for a local repository, else REMOTE_INTERVAL
    catch_up: bool = False
    force: bool = False

    def __post_init__(self) -> None:
        if self.interval is not None and not 0 < self.interval <= 3600:
            raise InvalidArgument(f"--interval must be more than 0 and at most an hour, got {self.interval:g}s")


@dataclass(frozen=True, slots=True)
class FollowStatus:
    """How far the standby is, and how far behind the repository it is."""

    dest: str
    repo: str
    applied_lsn: int
    applied_ts_ns: int
    archived_lsn: int  # the newest commit the repository holds (or promises, in its watermark)
    complete_through_ns: int  # the repository's known-complete time (watermark, else its last segment's)
    behind_commits: int
    behind_ns: int  # complete_through_ns minus the time through which the standby is complete
    segments_applied: int  # since this follower started
    commits_applied: int
    restored: RestoreResult | None = None  # the restore that built the standby, when this run did

    @property
    def caught_up(self) -> bool:
        return self.behind_commits == 0

    def as_dict(self) -> dict[str, object]:
        from pitr.timefmt import format_time

        return {"dest": self.dest, "repo": self.repo, "applied_lsn": self.applied_lsn,
                "applied_commit_time": format_time(self.applied_ts_ns) if self.applied_ts_ns else None,
                "archived_lsn": self.archived_lsn,
                "complete_through": format_time(self.complete_through_ns) if self.complete_through_ns else None,
                "behind_commits": self.behind_commits, "behind_seconds": round(self.behind_ns / 1e9, 3),
                "caught_up": self.caught_up, "segments_applied": self.segments_applied,
                "commits_applied": self.commits_applied}


@dataclass
class _Run:
    dest: str
    repo: Repository
    state: StateDB
    marker: FollowerMarker
    anchor: ChainAnchor
    applied_ts_ns: int
    complete_ns: int = 0  # the newest complete-through time of a segment this run applied
    segments: int = 0
    commits: int = 0
    restored: RestoreResult | None = None
    last: list[Applied] = field(default_factory=list)


def init_dir(dest: str) -> str:
    return os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}{INIT_SUFFIX}")


async def follow(repo: Repository, options: FollowOptions, *, report: Callable[[FollowStatus], None],
                 say: Say | None = None, progress: Progress | None = None,
                 clock: Callable[[], int] = time.time_ns, trace: Trace | None = None) -> FollowStatus:
    """Follow `repo` into `options.dest` until cancelled (or, with `catch_up`, until caught up).

    `report` hears the status after every look at the repository; `trace`, when given, what that look
    cost (the sync, what it indexed, each segment applied: bytes read, seconds to check, replay, apply). A gap, a damaged segment or a
    repository holding another history stops the follower with the error (HistoryGap, CorruptData,
    ForeignRepository); the standby stays at the last segment applied, and a rerun resumes there.
    """
    dest = absolute(options.dest)
    with await anyio.to_thread.run_sync(_BuildLock, dest):
        restored = await _ensure_standby(repo, dest, options, say, progress, clock)
    try:
        lock = await anyio.to_thread.run_sync(WriterLock, dest)
    except StoreLocked as exc:
        raise StoreLocked(dest, exc.pid) from exc
    except OSError as exc:
        raise file_error(exc, dest, "lock the standby") from exc
    try:
        run = await anyio.to_thread.run_sync(_open_run, repo, dest)
        run.restored = restored
        try:
            await _check_history(run)
            interval = options.interval
            if interval is None:
                interval = LOCAL_INTERVAL if repo.local_path(layout.IDENTITY) is not None else REMOTE_INTERVAL
            return await _follow_loop(run, interval, options.catch_up, report, trace)
        finally:
            run.state.close()
    finally:
        lock.release()


def _open_run(repo: Repository, dest: str) -> _Run:
    marker = read_follower(dest)
    if marker is None:
        raise UnsafeDestination(f"{dest} is a store but not a follower (no FOLLOWER marker)",
                                hint="follow into a new directory, or replace this store with --force")
    try:
        state = StateDB(os.path.join(dest, "state"), create=False)
    except OSError as exc:
        raise file_error(exc, dest, "open the standby's state") from exc
    try:
        applied, ts_ns = state.checkpoint()
        anchor = marker.anchor_at(applied)
        if anchor is None:
            known = ", ".join(str(a.lsn) for a in marker.anchors)
            raise CorruptData(f"{dest}: the standby's state is at LSN {applied}, its FOLLOWER marker knows the "
                              f"chain only at LSN {known}", path=os.path.join(dest, "FOLLOWER"), lsn=applied,
                              hint=RESTORE_HINT)
    except BaseException:
        state.close()
        raise
    return _Run(dest, repo, state, marker, anchor, ts_ns)


async def _check_history(run: _Run) -> None:
    ident = await run.repo.require_identity()
    if ident.encryption is not None and run.repo.segment_keys is None:
        raise WrongKey(f"{run.repo.url} is encrypted (key id {ident.encryption.key_id.hex()}) and no key was given",
                       hint="give the key file with --key-file FILE or PITR_KEY_FILE")
    if ident.store_id != run.marker.source_store_id:
        raise ForeignRepository(f"{run.repo.url} holds the history of store {ident.store_id} ({ident.name}); the "
                                f"standby {run.dest} follows store {run.marker.source_store_id} "
                                f"(from {run.marker.repo})")


async def _follow_loop(run: _Run, interval: float, catch_up: bool,
                       report: Callable[[FollowStatus], None], trace: Trace | None) -> FollowStatus:
    while True:
        started = time.perf_counter()
        mark = await run.repo.read_watermark()
        if mark is not None:  # the hint where the next look starts listing watermarks
            await anyio.to_thread.run_sync(run.repo.catalog.set_meta, "watermark",
                                           [mark.lsn, mark.complete_through_ns])
        listed = await list_segments(run.repo)
        looked = time.perf_counter()
        steps = choose_steps(listed, run.anchor.lsn, run.repo.url)
        done: list[Applied] = []
        for step in steps:
            applied = await _apply_step(run, step)
            run.anchor, run.applied_ts_ns = applied.anchor, applied.ts_ns
            run.complete_ns = max(run.complete_ns, applied.complete_through_ns)
            run.segments += 1
            run.commits += applied.commits
            done.append(applied)
            if applied.segment != step.chosen.name:
                break  # the live file reached past the steps chosen after this one: look again
        status = _status(run, None if mark is None else (mark.lsn, mark.complete_through_ns), listed)
        if trace is not None:
            trace({"at_ns": time.time_ns(), "look_s": round(looked - started, 4), "listed": len(listed),
                   "superseded": sum(not s.live for s in listed),
                   "pending": [s.chosen.name for s in steps], "applied": [a.trace() for a in done],
                   "poll_s": round(time.perf_counter() - started, 4), "applied_lsn": status.applied_lsn})
        if not steps and status.behind_commits:
            raise missing_after(run.repo, run.anchor.lsn, status.archived_lsn)
        report(status)
        if catch_up and status.caught_up and not done:
            return status
        if not done:
            await anyio.sleep(interval)


async def _apply_step(run: _Run, step: Step) -> Applied:
    """Apply the step's file; a superseded input that is gone or damaged gives way to the live file
    covering it (checked the same way: a damaged live file stops the follower)."""
    try:
        applied, run.marker = await apply_segment(run.repo, run.state, run.dest, run.marker, run.anchor,
                                                  step.chosen)
    except (ObjectNotFound, CorruptData):
        if step.fallback is None:
            raise
        applied, run.marker = await apply_segment(run.repo, run.state, run.dest, run.marker, run.anchor,
                                                  step.fallback)
    return applied


def _status(run: _Run, mark: tuple[int, int] | None, listed: list[Listed]) -> FollowStatus:
    """The standby against the repository's watermark and newest segment file."""
    newest = max((s.last_lsn for s in listed), default=0)
    archived = max(mark[0] if mark else 0, newest, run.anchor.lsn)
    complete = max(mark[1] if mark else 0, run.complete_ns)
    behind = archived - run.anchor.lsn
    standby_complete = complete if behind == 0 else run.applied_ts_ns
    return FollowStatus(run.dest, run.repo.url, run.anchor.lsn, run.applied_ts_ns, archived, complete, behind,
                        max(0, complete - standby_complete), run.segments, run.commits, run.restored)


# building the standby -------------------------------------------------------------------------

async def _ensure_standby(repo: Repository, dest: str, options: FollowOptions, say: Say | None,
                          progress: Progress | None, clock: Callable[[], int]) -> RestoreResult | None:
    """Make `dest` a follower of `repo` unless it is one already; returns the restore when one ran."""
    prepared = await anyio.to_thread.run_sync(_prepare, dest, options.force, _roots(repo))
    if prepared is None:
        return None
    init, restore_needed, replaced = prepared
    result: RestoreResult | None = None
    if restore_needed:
        ident = await repo.require_identity()
        built = await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=init, pause_gc=False),
                               progress=progress, say=say, clock=clock)
        assert isinstance(built, RestoreResult)
        result = built
        anchor = await anyio.to_thread.run_sync(_anchor_at, repo, built.target_lsn, ident.first_lsn,
                                                ident.start_chain_digest)
        marker = FollowerMarker(repo.url, ident.store_id, (anchor,))
        await anyio.to_thread.run_sync(write_follower, init, marker)
    await anyio.to_thread.run_sync(_move_into_place, init, dest, replaced)
    return result


class _BuildLock:
    """An flock on `.DIR.follow-init.lock` holding the PID, so one follower at a time looks at DIR and
    builds it; released on exit or process death (blocking: taken in a worker thread)."""

    def __init__(self, dest: str) -> None:
        path = f"{init_dir(dest)}.lock"
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise file_error(exc, path, "lock the standby's build") from exc
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise file_error(exc, path, "lock the standby's build") from exc
            holder = read_holder(path)
            raise UnsafeDestination(
                f"{dest}: another follower ({'process ' + str(holder) if holder else 'PID unknown'}) is "
                f"building this standby (it holds {path}); nothing was changed",
                hint="wait for that follower, or follow into another directory") from exc
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(self._fd)
            raise file_error(exc, path, "lock the standby's build") from exc

    def __enter__(self) -> _BuildLock:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)


def _prepare(dest: str, force: bool, roots: list[str]) -> tuple[str, bool, bool] | None:
    """None when `dest` is a follower already; else (the init directory, whether a restore must build it,
    whether a store at `dest` is replaced), removing a leftover init directory that never got its marker."""
    if read_follower(dest) is not None:
        return None
    init = init_dir(dest)
    if os.path.isdir(init) and read_follower(init) is None:
        _remove_unmarked(init)
    replaced = check_destination(dest, force=force, repo_roots=roots)
    return init, not os.path.isdir(init), replaced is not None


def _roots(repo: Repository) -> list[str]:
    identity = repo.local_path(layout.IDENTITY)
    return [os.path.dirname(identity)] if identity is not None else []


def _remove_unmarked(init: str) -> None:
    """A restore finished into `init` but died before its marker: built again from the start."""
    try:
        shutil.rmtree(init)
    except OSError as exc:
        raise file_error(exc, init, "remove an unfinished standby") from exc


def _anchor_at(repo: Repository, lsn: int, first_lsn: int, start_digest: bytes) -> ChainAnchor:
    """The chain digest at `lsn` (where a restore ended) from the catalog: the segment ending there, or
    the snapshot taken there, or the history's start."""
    seg = repo.catalog.segment_containing(lsn)
    if seg is not None and seg.last_lsn == lsn:
        return ChainAnchor(lsn, seg.chain_digest)
    snap = next((s for s in repo.catalog.snapshots() if s.lsn == lsn), None)
    if snap is not None:
        return ChainAnchor(lsn, snap.chain_digest)
    if lsn == first_lsn - 1:
        return ChainAnchor(lsn, start_digest)
    raise CorruptData(f"{repo.url}: the restore ended at LSN {lsn}, where no segment or snapshot gives the chain "
                      "digest the follower continues from", lsn=lsn, hint="run pitr verify on the repository")


def _move_into_place(init: str, dest: str, replace_existing: bool) -> None:
    """Rename the finished standby to `dest`; a store there (with --force) is renamed aside first, holding its
    writer lock, and removed once the standby is in place."""
    aside = None
    lock = None
    try:
        if os.path.lexists(dest):
            if not replace_existing:
                if os.path.isdir(dest) and not os.listdir(dest):
                    os.rmdir(dest)
                else:
                    raise DestinationExists(f"{dest} is not empty; pass --force to replace it")
            else:
                lock = hold_writer_lock(dest)  # checked by check_destination before the restore; no writer now
                aside = f"{init}.replaced"
                os.rename(dest, aside)
        os.rename(init, dest)
        fsync_dir(os.path.dirname(dest))
        if aside is not None:
            shutil.rmtree(aside)
    except OSError as exc:
        raise file_error(exc, dest, "put the standby in place") from exc
    finally:
        if lock is not None:
            lock.release()
