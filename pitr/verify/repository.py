"""Verifying a whole repository: every file, the chain, snapshot bindings, the catalog, optionally replays.

quick   headers, trailers, tables, chain links and LSN continuity (no block is read)
full    also every block and record checksum, every file digest, and the key index (the default)
replay  also: each snapshot plus the log after it reproduces the next snapshot's state digest

Verifying named files (`files=`) checks those files only and makes no claim
about the repository (no windows). Every result is recorded in the catalog,
so `timeline` and restores leave out what verify found damaged.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import anyio

from pitr.catalog.catalog import KeyRow
from pitr.catalog.entries import FileCheck, SnapshotEntry
from pitr.catalog.keytable import key_digest
from pitr.errors import CatalogDamaged, Gap, InvalidArgument, Window
from pitr.progress import ByteCounter
from pitr.repo import layout
from pitr.repo.identity import RepoIdentity
from pitr.repo.indexing import block_rows, key_rows_of, segment_entry, snapshot_entry
from pitr.repo.live import live_segments, live_snapshots
from pitr.repo.repository import Repository
from pitr.repo.witness import Witness
from pitr.timefmt import format_time
from pitr.timeline import build_timeline
from pitr.verify.catalog_check import ExpectedRows, check_catalog
from pitr.verify.checkpoints import CheckpointReport, check_checkpoints, opened_witness
from pitr.verify.checks import Finding, chain_findings, check_segment, check_snapshot, finding_from
from pitr.verify.replay import replay_checks
from segments import SegmentsError, parse_snapshot_name
from segments import record as rec
from segments.block_scan import key_digest as scan_key_digest
from segments.block_scan import sort_entries
from segments.block_seal import SegmentKeys
from segments.segment_reader import SegmentMeta, read_meta, verify_blocks
from segments.source import RangeSource

MODES = ("quick", "full", "replay")
KEY_PERSON = b"pitr-key-index"  # pitr.catalog.keytable.key_digest's personalisation (checked by key_table_person)
_LSN_TS = struct.Struct("<Qq")  # a record's LSN and commit time, at rec.LSN_OFFSET
Progress = Callable[[str, int, int], None]


@dataclass(slots=True)
class VerifyReport:
    """The outcome of verifying one repository (`scope` "repository"), or of named files (`scope` "files")."""

    url: str
    mode: str
    scope: str = "repository"
    files_checked: int = 0
    bytes_checked: int = 0
    findings: list[Finding] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    holes: list[Gap] = field(default_factory=list)
    replays: list[tuple[str, str, bool]] = field(default_factory=list)  # (from, to, matched)
    checked: list[str] = field(default_factory=list)  # names of the files checked (scope "files")
    catalog_damaged: bool = False
    seconds: float = 0.0
    keyless: bool = False  # an encrypted repository checked quick without its key: files and chain only
    checkpoints: CheckpointReport | None = None  # signed checkpoints and the witness (pitr/verify/checkpoints.py)

    @property
    def ok(self) -> bool:
        """No finding; for a repository also no hole and something restorable."""
        if self.scope == "files" or self.keyless:  # (keyless: no window is claimed either way)
            return not self.findings
        return not self.findings and not self.holes and bool(self.windows)

    def as_dict(self) -> dict[str, object]:
        return {"repository": self.url, "mode": self.mode, "scope": self.scope, "ok": self.ok,
                "files_checked": self.files_checked, "bytes_checked": self.bytes_checked,
                "findings": [f.as_dict() for f in self.findings],
                "windows": [{"start": format_time(w.start_ns), "end": format_time(w.end_ns),
                             "start_ns": w.start_ns, "end_ns": w.end_ns, "start_lsn": w.start_lsn,
                             "end_lsn": w.end_lsn} for w in self.windows],
                "holes": [{"first_lsn": h.first_lsn, "last_lsn": h.last_lsn, "reason": h.reason} for h in self.holes],
                "replays": [{"from": a, "to": b, "matched": m} for a, b, m in self.replays],
                "catalog_damaged": self.catalog_damaged, "checked": self.checked, "keyless": self.keyless,
                "seconds": round(self.seconds, 3),
                "checkpoints": None if self.checkpoints is None else self.checkpoints.as_dict()}


SegmentCheck = tuple[SegmentMeta | None, Finding | None, "list[KeyRow] | bytes | None", "list[int] | None"]


def _check_segment_file(name: str, source: RangeSource, *, full: bool, index: bool,
                        keys: SegmentKeys | None = None, sealed: bool = False,
                        person: bytes | None = None) -> SegmentCheck:
    """A segment's meta and finding; with `index`, also what it implies for the key index and its
    source-gap LSNs.

    With `index` (which implies `full`) the key rows come from the blocks the full check decompressed:
    the file is read once. Given `person` (`key_table_person`), they come as the segment's key table
    (sorted entries, joined), computed by the compiled scan; otherwise as key rows.
    """
    if not index:
        meta, finding = check_segment(name, source, full=full, keys=keys, sealed=sealed)
        return meta, finding, None, None
    rows: list[KeyRow] = []
    parts: list[bytes] = []
    gap_lsns: list[int] = []
    try:
        meta = read_meta(source)
        for block in verify_blocks(source, meta, keys=keys, person=person):
            if person is not None:
                parts.append(block.entries)
                gap_lsns += block.gaps
                continue
            found: list[tuple[int, int]] = []
            rows.extend(key_rows_of(block.raw, _spans(block.raw, block.ends), found))
            gap_lsns += [lsn for lsn, _before in found]
    except SegmentsError as exc:
        return None, finding_from(name, exc), None, None
    if person is not None:
        return meta, None, sort_entries(b"".join(parts)), gap_lsns
    return meta, None, rows, gap_lsns


def key_table_person() -> bytes | None:
    """The personalisation with which the compiled scan computes the catalog's key digests, or None
    when `pitr.catalog.keytable.key_digest` is not that digest (verify then compares key by key)."""
    probe = b"pitr verify: key digest probe"
    return KEY_PERSON if scan_key_digest(probe, KEY_PERSON) == key_digest(probe) else None


def _spans(raw: bytes, ends: list[int]) -> list[rec.Span]:
    """The spans of a checked block's records, given where each ends."""
    unpack = _LSN_TS.unpack_from
    offset = rec.LSN_OFFSET
    spans = []
    for start, end in zip([0, *ends[:-1]], ends, strict=True):
        lsn, ts_ns = unpack(raw, start + offset)
        spans.append(rec.Span(lsn, ts_ns, start, end))
    return spans


def _check_snapshot_file(name: str, source: RangeSource, *, full: bool, keys: SegmentKeys | None = None,
                         sealed: bool = False) -> tuple[Finding | None, SnapshotEntry | None]:
    finding = check_snapshot(name, source, full=full, keys=keys, sealed=sealed)
    if finding is not None or (sealed and keys is None):  # keyless: the files only, no catalog row
        return finding, None
    try:
        return None, snapshot_entry(name, source, keys=keys)
    except SegmentsError as exc:
        return finding_from(name, exc), None


async def _identity(repo: Repository) -> tuple[RepoIdentity, CatalogDamaged | None]:
    """The repository's identity, read past a damaged catalog (verify still checks the files then)."""
    try:
        return await repo.require_identity(), None
    except CatalogDamaged as exc:
        damage = exc
    ident = RepoIdentity.decode(await repo.storage.read(layout.IDENTITY), f"{repo.url}/{layout.IDENTITY}")
    return ident, damage


async def verify_repository(repo: Repository, *, mode: str = "full", files: Sequence[str] = (),
                            progress: Progress | None = None, witness: Witness | str | None = None) -> VerifyReport:
    """Check the repository's files and report what is broken and what remains restorable; with `witness`
    (an opened one, or a directory or `s3://` URL to open), also that the repository holds every LSN the
    witness's signed checkpoints reached, unaltered."""
    if isinstance(witness, str):
        async with opened_witness(witness, [repo]) as opened:
            return await verify_repository(repo, mode=mode, files=files, progress=progress, witness=opened)
    if mode not in MODES:
        raise InvalidArgument(f"verify mode must be one of {', '.join(MODES)}, not {mode!r}")
    started = time.monotonic()
    wanted = {os.path.basename(f) for f in files}
    report = VerifyReport(repo.url, mode, "files" if wanted else "repository")
    ident, damage = await _identity(repo)
    # Quick verification of an encrypted repository needs no key: structure and chain are stored in the
    # clear. The catalog is then not caught up (indexing opens blocks), so only the files are reported.
    keyless = report.keyless = mode == "quick" and ident.encryption is not None and repo.segment_keys is None
    if damage is None and not keyless:
        try:
            await repo.sync()
        except CatalogDamaged as exc:
            damage = exc
    if damage is None and not keyless:
        await repo.read_watermark(scan_all=True)  # every watermark object read: each damaged one is named
    for bad in repo.damaged_watermarks:  # skipped by readers (an older one is used): still damage
        report.findings.append(Finding(bad.name, f"damaged watermark: {bad.reason} (an older one is used; "
                                       "delete this object, or cleanup removes it once 16 newer exist)",
                                       kind="corrupt"))
    if damage is not None:
        report.catalog_damaged = True
        report.findings.append(Finding(damage.path or repo.catalog.path, f"{damage.message} (hint: {damage.hint})",
                                       kind="catalog"))
    seg_sizes = {i.name[len(layout.SEGMENTS):]: i.size for i in await repo.storage.list(layout.SEGMENTS)}
    keep, superseded = live_segments(list(seg_sizes))
    seg_names = sorted(keep, key=lambda n: keep[n])
    snap_sizes = {i.name[len(layout.SNAPSHOTS):]: i.size for i in await repo.storage.list(layout.SNAPSHOTS)}
    live_snaps, replaced = live_snapshots(snap_sizes)  # a snapshot a repair superseded is never read
    snap_names = sorted(live_snaps)
    for name in sorted(wanted - set(seg_names) - set(snap_names)):
        if name in superseded or name in replaced:  # named by the operator: say what it is, never BROKEN
            report.findings.append(Finding(name, "superseded (by a merge or a repaired copy): not part of the "
                                           "history and never read; pitr cleanup removes it", kind="superseded"))
        else:
            report.findings.append(Finding(name, "no such segment or snapshot in the repository", kind="missing"))
    full = mode != "quick"
    compare = damage is None and not wanted
    expected = ExpectedRows(gap_lsns=set() if full and compare else None, index_key=repo.catalog.index_key)
    metas: list[tuple[str, SegmentMeta]] = []
    # the compiled scan computes the unkeyed digests; a keyed catalog's rows are computed key by key
    person = key_table_person() if repo.catalog.index_key is None else None
    results: dict[str, tuple[str, int, int, Finding | None]] = {}
    todo = [(n, True) for n in seg_names] + [(n, False) for n in snap_names]
    # progress in bytes, counted as they are read and made whole as each file is done
    counter = ByteCounter("verify", sum(seg_sizes[n] for n in seg_names) + sum(snap_sizes[n] for n in snap_names),
                          progress)
    finished = 0
    for name, is_segment in todo:
        deep = full and (not wanted or name in wanted)
        object_name = layout.segment_object(name) if is_segment else layout.snapshot_object(name)
        source = counter.counting(await repo.open_source(object_name, fresh=True))
        try:
            if is_segment:
                meta, finding, rows, gap_lsns = await anyio.to_thread.run_sync(partial(
                    _check_segment_file, name, source, full=deep, index=compare and full, keys=repo.segment_keys,
                    sealed=ident.encryption is not None, person=person))
                first, last = keep[name]
                if meta is not None:
                    metas.append((name, meta))
                    expected.segments[name] = segment_entry(name, meta)
                    expected.blocks.update((b.first_lsn, b) for b in block_rows(meta))
                    if isinstance(rows, bytes):
                        expected.add_key_table(meta.first_lsn, meta.last_lsn, rows)
                    elif rows is not None:
                        expected.add_key_rows(rows)
                    if gap_lsns is not None and expected.gap_lsns is not None:
                        expected.gap_lsns.update(gap_lsns)
            else:
                finding, entry = await anyio.to_thread.run_sync(partial(
                    _check_snapshot_file, name, source, full=deep, keys=repo.segment_keys,
                    sealed=ident.encryption is not None))
                first = last = parse_snapshot_name(name) or 0
                if entry is not None:
                    expected.snapshots[name] = entry
            if not wanted or name in wanted:
                report.files_checked += 1
                report.bytes_checked += source.size
        finally:
            source.close()
        if finding is not None:
            expected.segments.pop(name, None)
            expected.snapshots.pop(name, None)
            expected.unchecked.append((first, last))
            expected.unchecked_names.add(name)
        if not wanted or name in wanted:
            results[name] = ("segment" if is_segment else "snapshot", first, last, finding)
        finished += (seg_sizes if is_segment else snap_sizes)[name]
        counter.reach(finished)
    counter.finish()
    metas.sort(key=lambda nm: nm[1].first_lsn)
    start = ident.start_chain_digest if metas and metas[0][1].first_lsn == ident.first_lsn else None
    for finding in chain_findings(metas, start):
        if finding.file in results and results[finding.file][3] is None:
            kind, first, last, _none = results[finding.file]
            results[finding.file] = (kind, first, last, finding)
    for _kind, _first, _last, finding in results.values():
        if finding is not None:
            report.findings.append(finding)
    report.checked = sorted(results)
    if not wanted:
        ends = [last for _first, last in keep.values()] + [parse_snapshot_name(n) or 0 for n in snap_names]
        report.checkpoints = await check_checkpoints(
            repo, ident, metas, max(ends) if ends else None, witness,
            None if repo.segment_keys is None else repo.segment_keys.link_key)
        report.findings.extend(report.checkpoints.findings)
    if damage is not None or keyless:
        report.seconds = time.monotonic() - started
        return report
    await _record(repo, mode, results)
    if compare:
        for name in (n for n in seg_names if n not in expected.segments):
            expected.unchecked_names.add(name)
            expected.unchecked.append(keep[name])
        report.findings.extend(await anyio.to_thread.run_sync(check_catalog, repo.catalog, expected))
    broken = frozenset(n for n, r in results.items() if r[3] is not None)
    timeline = build_timeline(repo.catalog, ident, broken)
    for name in timeline.unbound_snapshots:
        if name in results and name not in broken:
            report.findings.append(Finding(name, "snapshot's chain digest does not match the log at its LSN",
                                           kind="binding"))
    if mode == "replay" and not wanted:
        await replay_checks(repo, report.replays, report.findings, set(broken) | set(timeline.unbound_snapshots))
    if not wanted:
        report.windows = timeline.windows
        report.holes = timeline.holes
    report.seconds = time.monotonic() - started
    return report


async def _record(repo: Repository, mode: str, results: dict[str, tuple[str, int, int, Finding | None]]) -> None:
    """Record each file's result in the catalog (a file that could not be indexed stays so until reindex)."""
    now = time.time_ns()
    unindexed = {c.name for c in await anyio.to_thread.run_sync(repo.catalog.unindexed)}
    checks = [FileCheck(name, kind, first, last, "ok" if finding is None else "damaged",
                        finding.message if finding is not None else "", now, mode)
              for name, (kind, first, last, finding) in results.items() if name not in unindexed]
    await anyio.to_thread.run_sync(repo.catalog.record_files, checks)
