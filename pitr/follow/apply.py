"""One step of a follower: the segments published after the applied LSN, checked, replayed and applied.

A step reads each new segment once, as a restore does: its header, trailer and tables first, the
chain from the applied position to it, then every block and record as the replay folds them
(`pitr.restore.replay.replay_log` with verification on). The state moves one whole segment at a
time, in one LMDB transaction with its checkpoint, so it is always at the end of a segment the
follower checked, and the chain digest there is known: the marker records it before the state
moves (`pitr.datadir.markers.FollowerMarker.anchors`).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from functools import partial

import anyio

from pitr.catalog.entries import SegmentEntry
from pitr.datadir.markers import ChainAnchor, FollowerMarker, write_follower
from pitr.datadir.state import StateDB
from pitr.errors import CorruptData, Gap, HistoryGap, ObjectNotFound, Window, file_error
from pitr.follow.pending import RESTORE_HINT, Listed
from pitr.repo import layout
from pitr.repo.identity import RepoIdentity
from pitr.repo.indexing import segment_entry
from pitr.repo.repository import Repository
from pitr.restore.options import RestoreTarget
from pitr.restore.plan import RestorePlan
from pitr.restore.replay import replay_log
from pitr.scratch import remove_scratch
from pitr.timeline import Base
from pitr.verify.checks import check_segment
from segments import chain
from segments.fold import Change
from segments.segment_reader import SegmentMeta
from segments.source import FileSource, RangeSource


@dataclass(frozen=True, slots=True)
class Applied:
    """One segment applied: the state is now at `anchor`, its last commit timed `ts_ns`."""

    segment: str
    anchor: ChainAnchor
    ts_ns: int
    commits: int
    complete_through_ns: int  # the segment's trailer: no commit it lacks was made before then
    size: int = 0  # the segment file's bytes
    bytes_read: int = 0  # of those, read to check and apply it
    seconds: tuple[float, float, float] = (0.0, 0.0, 0.0)  # check (tables, chain), replay, state apply

    def trace(self) -> dict[str, object]:
        """What applying it cost, for the follower's trace."""
        check, replay_s, state = self.seconds
        return {"segment": self.segment, "commits": self.commits, "size": self.size, "bytes_read": self.bytes_read,
                "check_s": round(check, 4), "replay_s": round(replay_s, 4), "state_s": round(state, 4)}


class CountingSource:
    """A source that counts the bytes read through it (the follower's trace)."""

    def __init__(self, inner: RangeSource) -> None:
        self.inner = inner
        self.name = inner.name
        self.size = inner.size
        self.bytes_read = 0

    def read(self, offset: int, length: int) -> bytes:
        data = self.inner.read(offset, length)
        self.bytes_read += len(data)
        return data

    def close(self) -> None:
        self.inner.close()


def missing_after(repo: Repository, applied_lsn: int, archived_lsn: int) -> HistoryGap:
    """The error for a watermark that promises commits no segment holds."""
    return HistoryGap(f"{repo.url}: the watermark says the archive holds LSN {archived_lsn}, but no segment "
                      f"holds LSN {applied_lsn + 1}..{archived_lsn}", [Gap(applied_lsn + 1, archived_lsn)],
                      hint=RESTORE_HINT)


def chain_at(meta: SegmentMeta, lsn: int) -> bytes | None:
    """The chain digest at `lsn` as `meta`'s pieces give it (`lsn` just before the segment, or the end of
    one of its pieces); None when no piece ends there."""
    digest = meta.header.prev_chain_digest
    if lsn == meta.first_lsn - 1:
        return digest
    for piece in meta.pieces:
        if piece.first_lsn > lsn:
            break
        digest = chain.link(digest, piece)
        if piece.last_lsn == lsn:
            return digest
    return None


def check_link(meta: SegmentMeta, anchor: ChainAnchor, url: str) -> None:
    """Refuse a segment that does not continue the applied history at `anchor` (CorruptData naming it)."""
    name = layout.segment_object(meta.name)
    at = chain_at(meta, anchor.lsn)
    if at is None:
        raise CorruptData(f"{url}/{name}: no piece of the segment ends at the applied LSN {anchor.lsn}, so the "
                          "chain from the standby to it cannot be checked", path=name, lsn=anchor.lsn,
                          hint=RESTORE_HINT)
    if at != anchor.chain_digest:
        raise CorruptData(f"{url}/{name}: the segment does not continue the history the standby applied: the "
                          f"chain digest at LSN {anchor.lsn} is {at.hex()[:16]}..., the standby's "
                          f"{anchor.chain_digest.hex()[:16]}... (the repository's history was replaced)",
                          path=name, lsn=anchor.lsn, hint=RESTORE_HINT)


async def open_segment(repo: Repository, listed: Listed, work_dir: str) -> tuple[RangeSource, str | None]:
    """The segment's bytes: the file itself in a local repository, else a private download in `work_dir`
    (returned, to be removed once applied: a follower does not keep a second copy of the archive).
    A file gone since it was listed is `ObjectNotFound`."""
    name = layout.segment_object(listed.name)
    path = repo.local_path(name)
    if path is not None:
        try:
            return await anyio.to_thread.run_sync(FileSource, path), None
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"{repo.url}/{name} is gone (listed a moment ago)") from exc
        except OSError as exc:
            raise file_error(exc, path, "open a segment") from exc
    try:
        fd, tmp = tempfile.mkstemp(prefix=".follow-", suffix=".seg", dir=work_dir)
        os.close(fd)
    except OSError as exc:
        raise file_error(exc, work_dir, "create a download file") from exc
    try:
        await repo.storage.download(name, tmp)
        source = await anyio.to_thread.run_sync(FileSource, tmp)
    except BaseException:
        remove_scratch(tmp, "remove a download")
        raise
    source.name = name
    return source, tmp


def _no_spill(_changes: dict[bytes, Change], _lsn: int, _ts_ns: int) -> None:
    raise AssertionError("a follower applies a segment whole")  # max_changes is unbounded


def _replay(repo: Repository, ident: RepoIdentity, meta: SegmentMeta, entry: SegmentEntry, source: RangeSource,
            anchor: ChainAnchor) -> dict[bytes, Change]:
    """Fold the segment's records after `anchor.lsn`, checking every block and record (worker thread)."""
    base = Base(anchor.lsn, 0, None)
    plan = RestorePlan(target=RestoreTarget(lsn=meta.last_lsn), window=Window(0, meta.trailer.last_ts_ns,
                       anchor.lsn, meta.last_lsn), base=base, snapshot=None, segments=[entry],
                       target_lsn=meta.last_lsn, target_ts_ns=meta.trailer.last_ts_ns,
                       cutoff_ns=meta.trailer.last_ts_ns, identity=ident)
    return replay_log(plan, [source], verify=True, max_changes=sys.maxsize, spill=_no_spill,
                      keys=repo.segment_keys)


async def apply_segment(repo: Repository, state: StateDB, data_dir: str, marker: FollowerMarker,
                        anchor: ChainAnchor, listed: Listed) -> tuple[Applied, FollowerMarker]:
    """Check the segment file `listed` against the applied position and apply it; returns what was applied
    and the marker now on disk. Nothing moves when a check fails: the state stays at `anchor`."""
    opened, download = await open_segment(repo, listed, repo.cache_dir)
    source = CountingSource(opened)
    started = time.perf_counter()
    try:
        meta, finding = await anyio.to_thread.run_sync(
            partial(check_segment, listed.name, source, full=False, keys=repo.segment_keys,
                    sealed=repo.segment_keys is not None))
        if finding is not None or meta is None:
            where = f" at offset {finding.offset}" if finding is not None and finding.offset is not None else ""
            raise CorruptData(f"{repo.url}/{layout.segment_object(listed.name)}: "
                              f"{finding.message if finding else 'unreadable'}{where}",
                              path=layout.segment_object(listed.name), hint=RESTORE_HINT)
        if (meta.first_lsn, meta.last_lsn) != (listed.first_lsn, listed.last_lsn):
            raise CorruptData(f"{repo.url}/{layout.segment_object(listed.name)}: holds LSN {meta.first_lsn}.."
                              f"{meta.last_lsn}, its name says {listed.first_lsn}..{listed.last_lsn}",
                              path=layout.segment_object(listed.name), hint="move the misnamed file out of the "
                              "repository, then pitr verify")
        check_link(meta, anchor, repo.url)
        entry = segment_entry(listed.name, meta)
        ident = await repo.require_identity()
        checked = time.perf_counter()
        changes = await anyio.to_thread.run_sync(_replay, repo, ident, meta, entry, source, anchor)
        replayed = time.perf_counter()
    finally:
        source.close()
        if download is not None:
            remove_scratch(download, "remove a download")
    new = ChainAnchor(meta.last_lsn, meta.chain_digest)
    ts_ns = meta.trailer.last_ts_ns
    marker = replace(marker, anchors=(anchor, new))
    await anyio.to_thread.run_sync(write_follower, data_dir, marker)  # before the state moves: see anchors
    await anyio.to_thread.run_sync(state.apply, changes, new.lsn, ts_ns)
    seconds = (checked - started, replayed - checked, time.perf_counter() - replayed)
    return Applied(listed.name, new, ts_ns, new.lsn - anchor.lsn, meta.trailer.complete_through_ns, source.size,
                   source.bytes_read, seconds), marker

