"""Checking repository files one by one: segments, snapshots, their bindings and the chain."""

from __future__ import annotations

from dataclasses import dataclass

from segments import CorruptFile, SegmentsError
from segments.chain_check import check_chain
from segments.segment_reader import SegmentMeta, SegmentReader, read_meta
from segments.snapshot import SnapshotReader
from segments.source import RangeSource


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: which file, where in it, and what is wrong."""

    file: str
    message: str
    offset: int | None = None
    lsn: int | None = None
    kind: str = "corrupt"  # corrupt, chain, binding, replay, missing

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "kind": self.kind, "offset": self.offset, "lsn": self.lsn,
                "message": self.message}


def finding_from(name: str, exc: SegmentsError) -> Finding:
    if isinstance(exc, CorruptFile):
        return Finding(name, exc.reason + (f" (hint: {exc.hint})" if exc.hint else ""), exc.offset, exc.lsn)
    return Finding(name, str(exc))


def check_segment(name: str, source: RangeSource, *, full: bool) -> tuple[SegmentMeta | None, Finding | None]:
    """Quick: header, trailer, tables and chain digest. Full: every block, record and the file digest."""
    try:
        meta = read_meta(source)
        if full:
            SegmentReader(source, meta).verify()
    except SegmentsError as exc:
        return None, finding_from(name, exc)
    return meta, None


def check_snapshot(name: str, source: RangeSource, *, full: bool) -> Finding | None:
    try:
        reader = SnapshotReader(source)
        if full:
            reader.verify()
    except SegmentsError as exc:
        return finding_from(name, exc)
    return None


def chain_findings(metas: list[tuple[str, SegmentMeta]], start_digest: bytes | None) -> list[Finding]:
    """Chain problems across segments given in LSN order."""
    problems = check_chain([m for _n, m in metas], start_digest)
    out = []
    for p in problems:
        file = next((n for n, m in metas if m.name == p.path), p.path)
        out.append(Finding(file, p.message, kind="chain"))
    return out
