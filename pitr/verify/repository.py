"""Verifying a whole repository: every file, the chain, snapshot bindings, and optionally replays.

quick   headers, trailers, tables, chain links and LSN continuity (no block is read)
full    also every block and record checksum and every file digest (the default)
replay  also: each snapshot plus the log after it reproduces the next snapshot's state digest
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import anyio

from pitr.errors import InvalidArgument, Window
from pitr.repo import layout
from pitr.repo.repository import Repository
from pitr.restore.engine import build_state
from pitr.restore.options import RestoreTarget
from pitr.restore.plan import RestorePlan
from pitr.store._state import StateDB
from pitr.timeline import Base, build_timeline
from pitr.verify.checks import Finding, chain_findings, check_segment, check_snapshot
from segments import parse_segment_name, parse_snapshot_name
from segments.segment_reader import SegmentMeta

MODES = ("quick", "full", "replay")
Progress = Callable[[str, int, int], None]


@dataclass(slots=True)
class VerifyReport:
    """The outcome of verifying one repository."""

    url: str
    mode: str
    files_checked: int = 0
    bytes_checked: int = 0
    findings: list[Finding] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    replays: list[tuple[str, str, bool]] = field(default_factory=list)  # (from, to, matched)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, object]:
        return {"repository": self.url, "mode": self.mode, "ok": self.ok, "files_checked": self.files_checked,
                "bytes_checked": self.bytes_checked, "findings": [f.as_dict() for f in self.findings],
                "windows": [{"start_ns": w.start_ns, "end_ns": w.end_ns, "start_lsn": w.start_lsn,
                             "end_lsn": w.end_lsn} for w in self.windows],
                "replays": [{"from": a, "to": b, "matched": m} for a, b, m in self.replays],
                "seconds": round(self.seconds, 3)}


async def verify_repository(repo: Repository, *, mode: str = "full", files: Sequence[str] = (),
                            progress: Progress | None = None) -> VerifyReport:
    """Check the repository's files and report what is broken and what remains restorable."""
    if mode not in MODES:
        raise InvalidArgument(f"verify mode must be one of {', '.join(MODES)}, not {mode!r}")
    started = time.monotonic()
    report = VerifyReport(repo.url, mode)
    ident = await repo.require_identity()
    sync = await repo.sync()
    wanted = {os.path.basename(f) for f in files}
    seg_names = sorted(i.name[len(layout.SEGMENTS):] for i in await repo.storage.list(layout.SEGMENTS))
    seg_names = [n for n in seg_names if parse_segment_name(n) and n not in sync.superseded]
    snap_names = sorted(i.name[len(layout.SNAPSHOTS):] for i in await repo.storage.list(layout.SNAPSHOTS))
    snap_names = [n for n in snap_names if parse_snapshot_name(n)]
    if wanted:
        unknown = wanted - set(seg_names) - set(snap_names)
        for name in sorted(unknown):
            report.findings.append(Finding(name, "no such segment or snapshot in the repository", kind="missing"))
    full = mode != "quick"
    metas: list[tuple[str, SegmentMeta]] = []
    broken: set[str] = set()
    todo = [(n, True) for n in seg_names] + [(n, False) for n in snap_names]
    for i, (name, is_segment) in enumerate(todo):
        if progress:
            progress("verify", i, len(todo))
        object_name = layout.segment_object(name) if is_segment else layout.snapshot_object(name)
        source = await repo.open_source(object_name, fresh=True)
        try:
            if is_segment:
                deep = full and (not wanted or name in wanted)
                meta, finding = await anyio.to_thread.run_sync(partial(check_segment, name, source, full=deep))
                if meta is not None:
                    metas.append((name, meta))
            else:
                deep = full and (not wanted or name in wanted)
                finding = await anyio.to_thread.run_sync(partial(check_snapshot, name, source, full=deep))
            report.files_checked += 1
            report.bytes_checked += source.size
        finally:
            source.close()
        if finding is not None:
            broken.add(name)
            report.findings.append(finding)
    if progress:
        progress("verify", len(todo), len(todo))
    metas.sort(key=lambda nm: nm[1].first_lsn)
    start = ident.start_chain_digest if metas and metas[0][1].first_lsn == ident.first_lsn else None
    for finding in chain_findings(metas, start):
        if not wanted or finding.file in wanted:
            report.findings.append(finding)
            broken.add(finding.file)
    timeline = build_timeline(repo.catalog, ident, frozenset(broken))
    for name in timeline.unbound_snapshots:
        if name not in broken and (not wanted or name in wanted):
            report.findings.append(Finding(name, "snapshot's chain digest does not match the log at its LSN",
                                           kind="binding"))
            broken.add(name)
    if mode == "replay":
        await _replay_checks(repo, report, broken)
    report.windows = build_timeline(repo.catalog, ident, frozenset(broken)).windows
    report.seconds = time.monotonic() - started
    return report


async def _replay_checks(repo: Repository, report: VerifyReport, broken: set[str]) -> None:
    """Prove snapshot N + log reproduces snapshot N+1's state digest, for each consecutive pair."""
    ident = await repo.require_identity()
    snaps = [s for s in repo.catalog.snapshots() if s.name not in broken]
    for prev, nxt in zip(snaps, snaps[1:], strict=False):
        segments = [s for s in repo.catalog.segments_from(prev.lsn + 1)
                    if s.first_lsn <= nxt.lsn and s.last_lsn > prev.lsn]
        if any(s.name in broken for s in segments):
            continue
        window = Window(prev.ts_ns, nxt.ts_ns, prev.lsn, nxt.lsn)
        plan = RestorePlan(RestoreTarget(lsn=nxt.lsn), window, Base(prev.lsn, prev.ts_ns, prev.name), prev,
                           segments, nxt.lsn, nxt.ts_ns, nxt.ts_ns, ident)
        tmp = tempfile.mkdtemp(prefix=".verify-replay-", dir=repo.cache_dir)
        sources = []
        try:
            snap_src = await repo.open_source(layout.snapshot_object(prev.name))
            sources.append(snap_src)
            for seg in segments:
                sources.append(await repo.open_source(layout.segment_object(seg.name)))
            await anyio.to_thread.run_sync(partial(build_state, os.path.join(tmp, "state"), plan, snap_src,
                                                   sources[1:], name="verify"))
            state = StateDB(os.path.join(tmp, "state"))
            try:
                digest, _count = await anyio.to_thread.run_sync(state.state_digest, nxt.ts_ns)
            finally:
                state.close()
        finally:
            for src in sources:
                src.close()
            shutil.rmtree(tmp, ignore_errors=True)
        matched = digest == nxt.state_digest
        report.replays.append((prev.name, nxt.name, matched))
        if not matched:
            report.findings.append(Finding(nxt.name, f"replaying the log from {prev.name} does not reproduce "
                                           "this snapshot's state digest", lsn=nxt.lsn, kind="replay"))
