"""`python -m segments verify FILE...`: fully check WAL files, archive segments and snapshots.

Each file's type is read from its magic. Every checksum is checked (records,
blocks, tables, piece and file digests, state digest) and every record decoded.
A WAL file is never repaired: a torn tail is reported as a finding. Segment
files given together are also checked as one chain, in LSN order. Exit status:
0 when everything is intact, 1 when anything is not (the entry point maps usage
errors to 2).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from typing import TextIO

from segments import cli_common as common
from segments import record as rec
from segments import wal
from segments._errors import CorruptFile
from segments.chain_check import check_chain
from segments.naming import base_name, parse_segment_name, parse_snapshot_name, segment_name, snapshot_name
from segments.segment_reader import SegmentMeta, SegmentReader
from segments.snapshot import SnapshotReader
from segments.source import FileSource


@dataclass(frozen=True, kw_only=True, slots=True)
class VerifyOptions:
    """Which files to check and how to report."""

    paths: tuple[str, ...]
    json: bool = False

    def __post_init__(self) -> None:
        if not self.paths:
            raise ValueError("verify needs at least one file")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="WAL files, archive segments and snapshots, in any order")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def options_from(args: argparse.Namespace) -> VerifyOptions:
    return VerifyOptions(paths=tuple(args.files), json=args.json)


@dataclass(slots=True)
class FileReport:
    """The outcome for one file: its type, a summary of what it holds, and the problems."""

    path: str
    kind: str | None = None
    summary: dict[str, object] = field(default_factory=dict)
    problems: list[dict[str, object]] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, object]:
        return {"path": self.path, "type": self.kind, "valid": self.valid, "summary": self.summary,
                "problems": self.problems}


def run(options: VerifyOptions, out: TextIO) -> int:
    """Check every file, then the chain of the segments; return 0 if all intact, else 1."""
    reports: list[FileReport] = []
    metas: list[SegmentMeta] = []
    for path in options.paths:
        report = FileReport(path)
        try:
            report.kind = common.detect_kind(path)
            if report.kind is None:
                report.problems.append({"error": "NotPitrFile", "path": path, "offset": 0,
                                        "message": f"{path}: not a pitr file ({common.describe_magic(path)})"})
            elif report.kind == common.WAL:
                _verify_wal(report)
            elif report.kind == common.SEGMENT:
                _verify_segment(report, metas)
            else:
                _verify_snapshot(report)
        except Exception as exc:
            if not common.is_expected_failure(exc):
                raise
            report.problems.append(common.error_fields(exc))
        reports.append(report)
    metas.sort(key=lambda m: (m.first_lsn, m.last_lsn))
    chain: list[dict[str, object]] = [{"kind": p.kind, "path": p.path, "previous": p.previous, "message": p.message}
             for p in check_chain(metas)] if len(metas) > 1 else []
    valid = all(r.valid for r in reports) and not chain
    if options.json:
        out.write(json.dumps({"valid": valid, "files": [r.as_json() for r in reports],
                              "chain": chain, "segments_in_chain": len(metas)}, indent=2) + "\n")
    else:
        _print_text(reports, chain, len(metas), out)
    return 0 if valid else 1


def _print_text(reports: list[FileReport], chain: list[dict[str, object]], chained: int, out: TextIO) -> None:
    for report in reports:
        if report.valid:
            summary = ", ".join(f"{k} {v}" for k, v in report.summary.items())
            out.write(f"OK       {report.path} ({report.kind}: {summary})\n")
        else:
            for problem in report.problems:
                out.write(f"INVALID  {report.path}: {problem['message']}\n")
    for problem in chain:
        out.write(f"CHAIN    {problem['message']}\n")
    bad = sum(not r.valid for r in reports)
    line = f"{len(reports)} file(s) checked: {len(reports) - bad} intact, {bad} invalid"
    if chained > 1:
        line += f"; chain of {chained} segments: " + (f"{len(chain)} problem(s)" if chain else "continuous")
    out.write(line + "\n")


def _verify_wal(report: FileReport) -> None:
    scan = wal.scan_wal(report.path, repair=False)
    unknown = 0
    with open(report.path, "rb") as fh:
        data = fh.read(scan.end)
    for span in scan.spans:
        try:
            if rec.decode_payload(data, span, skip_unknown=True) is None:
                unknown += 1
        except CorruptFile as exc:
            raise exc.located(path=report.path) from exc
    report.summary = {"store": str(scan.header.store_id), "LSN": f"{scan.header.first_lsn}..{scan.last_lsn}",
                      "records": len(scan.spans), "end": scan.end}
    if unknown:
        report.summary["unknown_type_records"] = unknown
    if scan.torn is not None:
        torn = scan.torn
        report.problems.append({
            "error": "TornTail", "path": report.path, "offset": torn.offset, "lsn": scan.last_lsn + 1,
            "length": torn.length,
            "message": f"{report.path}, offset {torn.offset}, LSN {scan.last_lsn + 1}: torn tail of "
                       f"{torn.length} bytes ({torn.reason}); not repaired by verify, opening the store "
                       f"truncates it and keeps the bytes in {torn.broken_path}",
        })


def _verify_segment(report: FileReport, metas: list[SegmentMeta]) -> None:
    with SegmentReader(FileSource(report.path)) as reader:
        meta = reader.meta
        metas.append(meta)
        report.summary = {"store": str(meta.header.store_id), "LSN": f"{meta.first_lsn}..{meta.last_lsn}",
                          "records": meta.trailer.record_count, "blocks": len(meta.index),
                          "pieces": len(meta.pieces)}
        _check_name(report, parse_segment_name(os.path.basename(report.path)) is not None,
                    segment_name(meta.first_lsn, meta.last_lsn))
        reader.verify()
        unknown = 0
        for i in range(len(meta.index)):
            raw = reader.read_block(i)
            for span in reader.block_spans(i, raw):
                try:
                    if rec.decode_payload(raw, span, skip_unknown=True) is None:
                        unknown += 1
                except CorruptFile as exc:
                    raise CorruptFile(f"block {i}: {exc.reason}", path=report.path,
                                          offset=meta.index[i].offset, lsn=exc.lsn) from exc
        if unknown:
            report.summary["unknown_type_records"] = unknown


def _verify_snapshot(report: FileReport) -> None:
    with SnapshotReader(FileSource(report.path)) as reader:
        h = reader.header
        report.summary = {"store": str(h.store_id), "LSN": h.lsn, "time": common.format_time(h.ts_ns),
                          "entries": h.entry_count}
        _check_name(report, parse_snapshot_name(os.path.basename(report.path)) is not None,
                    snapshot_name(h.lsn, h.ts_ns))
        reader.verify()


def _check_name(report: FileReport, follows_convention: bool, expected: str) -> None:
    """A file named by the convention must carry the name its contents give it (of any repair generation)."""
    name = os.path.basename(report.path)
    if follows_convention and base_name(name) != expected:
        report.problems.append({
            "error": "NameMismatch", "path": report.path, "offset": 0,
            "message": f"{report.path}: the name does not match the contents, which would be named {expected}",
        })
