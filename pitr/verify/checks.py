"""Checking repository files one by one: segments, snapshots, their bindings and the chain."""

from __future__ import annotations

from dataclasses import dataclass

from pitr.repo.indexing import refused_snapshot
from segments import CorruptFile, SegmentsError
from segments.block_seal import SegmentKeys
from segments.chain_check import check_chain
from segments.segment_reader import BlockOpener, SegmentMeta, read_meta, verify_segment
from segments.snapshot import SnapshotReader
from segments.source import RangeSource


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: which file, where in it, and what is wrong."""

    file: str
    message: str
    offset: int | None = None
    lsn: int | None = None
    kind: str = "corrupt"  # corrupt, chain, binding, replay, missing, superseded

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "kind": self.kind, "offset": self.offset, "lsn": self.lsn,
                "message": self.message}


def finding_from(name: str, exc: SegmentsError) -> Finding:
    if isinstance(exc, CorruptFile):
        return Finding(name, exc.reason + (f" (hint: {exc.hint})" if exc.hint else ""), exc.offset, exc.lsn)
    return Finding(name, str(exc))


def check_segment(name: str, source: RangeSource, *, full: bool, keys: SegmentKeys | None = None,
                  sealed: bool = False) -> tuple[SegmentMeta | None, Finding | None]:
    """Quick: header, trailer, tables and chain digest. Full: every block, record and the file digest,
    reading the file once (`verify_segment`). In an encrypted repository (`sealed`, or given its `keys`)
    a segment that is not sealed is a finding, quick or full, key or no key; full opens every block."""
    try:
        meta = read_meta(source)
        BlockOpener(meta, keys)  # refuses a plaintext segment under keys
        if sealed and meta.header.salt is None:
            raise CorruptFile("the segment is not sealed, but the repository is encrypted: it was not written "
                              "with the repository's key", path=name, offset=0,
                              hint="move the file out of the repository and restore it from another copy")
        if full:
            verify_segment(source, meta, keys=keys)
    except SegmentsError as exc:
        return None, finding_from(name, exc)
    return meta, None


def check_snapshot(name: str, source: RangeSource, *, full: bool, keys: SegmentKeys | None = None,
                   sealed: bool = False) -> Finding | None:
    """Quick: header, footer and index. Full: every block and digest. In an encrypted repository
    (`sealed`, or given its `keys`) a snapshot that is not sealed is a finding, key or no key."""
    try:
        reader = SnapshotReader(source, keys=keys)
        if sealed and not reader.header.sealed:
            raise refused_snapshot(name)
        if full:
            reader.verify()
    except SegmentsError as exc:
        return finding_from(name, exc)
    return None


def chain_findings(metas: list[tuple[str, SegmentMeta]], start_digest: bytes | None) -> list[Finding]:
    """Chain problems across healthy segments given in LSN order, blamed only on the file at fault.

    Missing LSNs (a deleted or damaged file between two healthy ones) are a hole,
    reported by the timeline, not a fault of the next file: the chain is checked
    within each LSN-contiguous run. A file that fails to link to a file already
    blamed for a broken link is not blamed again (it may well link to the
    original that was replaced).
    """
    runs: list[list[tuple[str, SegmentMeta]]] = []
    for name, meta in metas:
        if runs and meta.first_lsn <= runs[-1][-1][1].last_lsn + 1:
            runs[-1].append((name, meta))
        else:
            runs.append([(name, meta)])
    out: list[Finding] = []
    blamed: set[str] = set()
    for i, run in enumerate(runs):
        problems = check_chain([m for _n, m in run], start_digest if i == 0 else None)
        names = {m.name: n for n, m in run}
        for p in problems:
            file = names.get(p.path, p.path)
            previous = names.get(p.previous, p.previous) if p.previous is not None else None
            if p.kind == "link" and previous in blamed:
                continue
            blamed.add(file)
            out.append(Finding(file, p.message, kind="chain"))
    return out
