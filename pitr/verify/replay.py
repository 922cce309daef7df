"""Replay verification: snapshot N plus the log after it reproduces snapshot N+1's state digest."""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import partial

import anyio

from pitr.catalog.entries import SegmentEntry
from pitr.datadir.state import StateDB
from pitr.errors import Window
from pitr.repo import layout
from pitr.repo.repository import Repository
from pitr.restore.engine import build_state
from pitr.restore.options import RestoreTarget
from pitr.restore.plan import RestorePlan
from pitr.timeline import Base
from pitr.verify.checks import Finding


def _contiguous(segments: list[SegmentEntry], first_lsn: int, last_lsn: int) -> bool:
    """Whether the segments hold every LSN in first_lsn..last_lsn."""
    reach = first_lsn - 1
    for seg in segments:
        if seg.first_lsn > reach + 1:
            return False
        reach = max(reach, seg.last_lsn)
    return reach >= last_lsn or last_lsn < first_lsn


def _state_digest(state_dir: str, now_ns: int) -> bytes:
    """The state digest of the LMDB state at `state_dir` at `now_ns` (opened, read and closed here)."""
    state = StateDB(state_dir, readonly=True)
    try:
        return state.state_digest(now_ns)[0]
    finally:
        state.close()


async def replay_checks(repo: Repository, replays: list[tuple[str, str, bool]], findings: list[Finding],
                        broken: set[str]) -> None:
    """Prove snapshot N + log reproduces snapshot N+1's state digest, for each consecutive pair."""
    ident = await repo.require_identity()
    snaps = [s for s in repo.catalog.snapshots() if s.name not in broken]
    for prev, nxt in zip(snaps, snaps[1:], strict=False):
        segments = [s for s in repo.catalog.segments_from(prev.lsn + 1)
                    if s.first_lsn <= nxt.lsn and s.last_lsn > prev.lsn]
        if any(s.name in broken for s in segments) or not _contiguous(segments, prev.lsn + 1, nxt.lsn):
            continue  # the damage or the hole is reported already; there is nothing to replay over it
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
                                                   sources[1:], name="verify",
                                                   segment_keys=repo.segment_keys))
            digest = await anyio.to_thread.run_sync(_state_digest, os.path.join(tmp, "state"), nxt.ts_ns)
        finally:
            for src in sources:
                src.close()
            shutil.rmtree(tmp, ignore_errors=True)
        matched = digest == nxt.state_digest
        replays.append((prev.name, nxt.name, matched))
        if not matched:
            findings.append(Finding(nxt.name, f"replaying the log from {prev.name} does not reproduce "
                                           "this snapshot's state digest", lsn=nxt.lsn, kind="replay"))
