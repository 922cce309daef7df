"""Whether a repository still holds the history an archiver continues.

An archiver may only append to a history it can see whole: the identity
document it claimed, and a contiguous, chained run of segments from the file
it published last back to the start of the history or to a snapshot (a base a
restore can start from). Anything else (the repository deleted under a
running archiver, restored from an older copy, its identity replaced, files
removed by hand) means the commits it would publish next would follow a hole,
and `verify` and `restore` could not use them. The archiver then stops with
`RepositoryLost` instead of publishing.

Two checks: `check_continuity` when an archiver starts (from the catalog,
just synchronised with the files), and `check_unchanged` before each publish
(two small requests: the identity document and the newest file).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pitr.catalog.entries import SegmentEntry, SnapshotEntry
from pitr.errors import CorruptData, ObjectNotFound, RepositoryLost
from pitr.repo import layout
from pitr.repo.identity import RepoIdentity
from pitr.storage.base import Storage
from segments import parse_segment_name

LOST_HINT = ("nothing more is published there; archive into a new, empty repository instead "
             "(pitr archive --repo NEW, then pitr snapshot --repo NEW for a base), and keep this one "
             "aside until you know what removed its files")


@dataclass(frozen=True, slots=True)
class HistoryTail:
    """The end of the history a repository holds: the next commit to publish is `lsn + 1`."""

    lsn: int
    chain_digest: bytes
    object_name: str | None  # the segment or snapshot ending there (None: the history is empty)


def history_tail(ident: RepoIdentity, segments: Sequence[SegmentEntry],
                 snapshots: Sequence[SnapshotEntry]) -> HistoryTail:
    """Where appending resumes: after the newest segment, or after a newer snapshot."""
    tail = HistoryTail(ident.first_lsn - 1, ident.start_chain_digest, None)
    if segments:
        last = max(segments, key=lambda s: s.last_lsn)
        tail = HistoryTail(last.last_lsn, last.chain_digest, layout.segment_object(last.name))
    if snapshots:
        snap = max(snapshots, key=lambda s: s.lsn)
        if snap.lsn > tail.lsn:
            tail = HistoryTail(snap.lsn, snap.chain_digest, layout.snapshot_object(snap.name))
    return tail


def _describe(tail: HistoryTail, ident: RepoIdentity) -> str:
    if tail.object_name is None:
        return "no commits at all"
    return f"commits only through LSN {tail.lsn} (history starts at LSN {ident.first_lsn})"


def check_continuity(url: str, ident: RepoIdentity, segments: Sequence[SegmentEntry],
                     snapshots: Sequence[SnapshotEntry], *, archived_lsn: int | None = None,
                     unreadable: Sequence[str] = ()) -> HistoryTail:
    """The tail an archiver may append to, or `RepositoryLost` / `CorruptData` saying why not.

    `archived_lsn` is how far this store's own archive marker says it has
    already published into the repository; `unreadable` names files the
    catalog could not index.
    """
    tail = history_tail(ident, segments, snapshots)
    if archived_lsn is not None and archived_lsn > tail.lsn:
        raise RepositoryLost(
            f"{url}: this store has archived its commits through LSN {archived_lsn} into this repository, "
            f"but it now holds {_describe(tail, ident)}: the repository lost history it had", hint=LOST_HINT)
    beyond = [name for name in unreadable if (parsed := parse_segment_name(name)) and parsed[1] > tail.lsn]
    if beyond:
        raise CorruptData(
            f"{url}: the newest history is unreadable ({', '.join(sorted(beyond))}); archiving cannot "
            f"continue after LSN {tail.lsn} without overlapping it", path=f"{url}/{layout.SEGMENTS}{beyond[0]}",
            hint="run `pitr verify` to see the damage, then archive into a new, empty repository")
    ordered = sorted(segments, key=lambda s: s.first_lsn)
    bases = {snap.lsn for snap in snapshots}
    newest_base = max(bases, default=-1)
    i = len(ordered) - 1
    if i < 0 or ordered[i].last_lsn < tail.lsn:
        return tail  # no segments, or the tail is a snapshot: a base by itself
    while True:
        seg = ordered[i]
        if newest_base >= seg.first_lsn - 1:
            return tail  # a snapshot inside the contiguous run: restores start there
        if seg.first_lsn == ident.first_lsn:
            if seg.prev_chain_digest != ident.start_chain_digest:
                raise RepositoryLost(
                    f"{url}: {seg.name} starts the history but does not link to the identity's starting "
                    "chain digest: the repository's files are not this history's", hint=LOST_HINT)
            return tail
        before = ordered[i - 1] if i > 0 else None
        if before is None or before.last_lsn != seg.first_lsn - 1:
            missing_to = seg.first_lsn - 1
            missing_from = ident.first_lsn if before is None else before.last_lsn + 1
            raise RepositoryLost(
                f"{url}: LSNs {missing_from}..{missing_to} are missing and no snapshot after them is a base: "
                f"the history this archiver continues is no longer whole", hint=LOST_HINT)
        if before.chain_digest != seg.prev_chain_digest:
            raise RepositoryLost(
                f"{url}: {seg.name} does not link to {before.name} (chain digest): the files are from "
                "different histories", hint=LOST_HINT)
        i -= 1


async def check_unchanged(storage: Storage, claimed: bytes, tail: HistoryTail) -> None:
    """Before publishing: the identity document is the one claimed and the newest file is still there."""
    where = f"{storage.url}/{layout.IDENTITY}"
    try:
        current = await storage.read(layout.IDENTITY)
    except ObjectNotFound:
        raise RepositoryLost(
            f"{storage.url}: the identity document {layout.IDENTITY} is gone: the repository was deleted or "
            "replaced while this archiver ran", hint=LOST_HINT) from None
    if current != claimed:
        raise RepositoryLost(f"{where} changed while this archiver ran: the repository was replaced",
                             hint=LOST_HINT)
    if tail.object_name is not None and await storage.stat(tail.object_name) is None:
        raise RepositoryLost(
            f"{storage.url}: {tail.object_name} (commits through LSN {tail.lsn}, the newest this archiver "
            "published) is gone: the repository lost history while this archiver ran", hint=LOST_HINT)
