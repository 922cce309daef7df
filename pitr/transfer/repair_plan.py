"""What a write-once repair publishes: for each damaged file and hole, the healthy copy's file (or pieces)
and the new name that supersedes the damaged file without writing any name twice (docs/format.md,
"File names": repair generations)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import anyio

from pitr.catalog.entries import SegmentEntry, SnapshotEntry
from pitr.errors import Gap, file_error
from pitr.repo.repository import Repository
from pitr.transfer.files import RepoFile, local_copy
from segments import SegmentsError
from segments.merge import merge_segments
from segments.naming import (
    MAX_GENERATION,
    base_name,
    generation_of,
    parse_segment_file,
    parse_snapshot_file,
    segment_name,
    with_generation,
)
from segments.segment_reader import SegmentReader
from segments.source import FileSource


@dataclass(slots=True)
class Publication:
    """One file a repair publishes: `name` (new in the repository), made of the healthy repository's
    `sources` (one file copied as it is, or several consecutive segments merged into one)."""

    name: str
    kind: str  # "segment" or "snapshot"
    first_lsn: int
    last_lsn: int
    sources: list[RepoFile]
    supersedes: list[str] = field(default_factory=list)  # the damaged files it replaces
    same_range: bool = False  # the next generation of the damaged file's own name (the same LSNs)
    what: str = ""  # for a hole: "LSN a..b"


class _Names:
    """The names a repository holds, and the next repair generation of each (a name is never reused)."""

    def __init__(self, listed: Iterable[str]) -> None:
        self.newest: dict[str, int] = {}
        for name in listed:
            base = base_name(name)
            if base is not None:
                self.newest[base] = max(self.newest.get(base, 0), generation_of(name))

    def next_name(self, base: str) -> str | None:
        """`base` at the generation after the newest held (the base itself when absent); None past the last."""
        generation = self.newest[base] + 1 if base in self.newest else 0
        if generation > MAX_GENERATION:
            return None
        self.newest[base] = generation
        return with_generation(base, generation)


def _cover(segments: list[RepoFile], first: int, last: int) -> tuple[list[RepoFile], int]:
    """The consecutive healthy segments holding LSNs `first..last`, and how far they reach without a gap."""
    pieces = [f for f in segments if f.first_lsn <= last and first <= f.last_lsn]
    out: list[RepoFile] = []
    reach = first - 1
    for f in pieces:
        if f.first_lsn > reach + 1 or (out and f.first_lsn != out[-1].last_lsn + 1):
            break
        out.append(f)
        reach = f.last_lsn
    return out, reach


def plan_publications(healthy_segments: list[SegmentEntry], healthy_snapshots: list[SnapshotEntry],
                      damaged: list[tuple[str, tuple[int, int] | None]], holes: list[Gap], listed: list[str]
                      ) -> tuple[list[Publication], list[tuple[str, str]]]:
    """The files to publish (in LSN order) and what nothing can repair, with why.

    `damaged` names each file verify found damaged, with its LSN range when the catalog knows it;
    `listed` is every segment and snapshot name the repository holds (any generation)."""
    names = _Names(listed)
    segments = sorted((RepoFile(s.name, "segment", s.first_lsn, s.last_lsn, s.size) for s in healthy_segments),
                      key=lambda f: f.first_lsn)
    snapshots = {base_name(s.name): RepoFile(s.name, "snapshot", s.lsn, s.lsn, s.size) for s in healthy_snapshots}
    planned: dict[str, Publication] = {}  # by the base name of what is published
    missing: list[tuple[str, str]] = []
    exhausted = f"it was republished {MAX_GENERATION} times already; copy the healthy repository instead"
    for name, known in damaged:
        snapshot, segment = parse_snapshot_file(name), parse_segment_file(name)
        if snapshot is not None:
            source = snapshots.get(snapshot[1])
            if source is None:
                missing.append((name, "the healthy repository holds no copy of this snapshot"))
            elif snapshot[1] in planned:
                planned[snapshot[1]].supersedes.append(name)
            elif (new := names.next_name(snapshot[1])) is None:
                missing.append((name, exhausted))
            else:
                planned[snapshot[1]] = Publication(new, "snapshot", snapshot[0], snapshot[0], [source], [name], True)
            continue
        if segment is None:
            missing.append((name, "not a segment or snapshot: repair replaces only those"))
            continue
        first, last = known if known is not None and known[0] <= known[1] else segment[:2]
        cover, reach = _cover(segments, first, last)
        if reach < last or not cover or cover[0].first_lsn > first:
            missing.append((name, f"the healthy repository holds no segment with LSNs {reach + 1}..{last}"))
            continue
        lo, hi = cover[0].first_lsn, cover[-1].last_lsn
        base = segment_name(lo, hi)
        if base in planned:
            planned[base].supersedes.append(name)
        elif (new := names.next_name(base)) is None:
            missing.append((name, exhausted))
        else:
            planned[base] = Publication(new, "segment", lo, hi, cover, [name], (lo, hi) == (first, last))
    for hole in holes:
        what = f"LSN {hole.first_lsn}..{hole.last_lsn}"
        cover, reach = _cover(segments, hole.first_lsn, hole.last_lsn)
        for f in cover:
            base = segment_name(f.first_lsn, f.last_lsn)
            covered = any(p.kind == "segment" and p.first_lsn <= f.first_lsn and f.last_lsn <= p.last_lsn
                          for p in planned.values())  # the damaged file's LSNs: its replacement holds them
            if base not in names.newest and not covered:  # a file held already is not the hole
                new = names.next_name(base)
                assert new is not None  # an absent base is generation 0
                planned[base] = Publication(new, "segment", f.first_lsn, f.last_lsn, [f], what=what)
        if reach < hole.last_lsn:
            missing.append((what, f"the healthy repository holds no segment with LSNs {reach + 1}..{hole.last_lsn}"))
    order = sorted(planned.values(), key=lambda p: (p.first_lsn, p.kind != "segment"))
    return order, missing


@asynccontextmanager
async def merged_copy(healthy: Repository, sources: list[RepoFile], staging: str
                      ) -> AsyncIterator[tuple[FileSource | None, str]]:
    """The healthy repository's consecutive segments `sources` merged into one local file (the archiver's
    merge: every block checked, the chain kept), or None and why they cannot be merged."""
    async with AsyncExitStack() as stack:
        copies = [await stack.enter_async_context(local_copy(healthy, f.object_name, staging)) for f in sources]
        fd, path = await anyio.to_thread.run_sync(_temporary, staging)

        def merge() -> str:
            with os.fdopen(fd, "wb") as out:
                readers = [SegmentReader(c, keys=healthy.segment_keys) for c in copies]
                merge_segments(readers, out, keys=healthy.segment_keys)
            return ""

        try:
            problem = await anyio.to_thread.run_sync(merge)
        except (SegmentsError, ValueError) as exc:
            problem = f"the healthy repository's segments {sources[0].name} .. {sources[-1].name} cannot be " \
                      f"merged into one that supersedes it: {exc}"
        except OSError as exc:
            raise file_error(exc, path, "write the merged copy") from exc
        if problem:
            yield None, problem
            return
        try:
            merged = await anyio.to_thread.run_sync(FileSource, path)
        except OSError as exc:
            raise file_error(exc, path, "read the merged copy") from exc
        try:
            yield merged, ""
        finally:
            merged.close()


def _temporary(staging: str) -> tuple[int, str]:
    try:
        return tempfile.mkstemp(dir=staging, prefix="merged-")
    except OSError as exc:
        raise file_error(exc, staging, "create a staging file") from exc
