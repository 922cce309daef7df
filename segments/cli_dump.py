"""`python -m segments dump FILE`: print the records of a WAL file or segment, or a snapshot's entries.

Like pg_waldump: one line per commit (LSN, commit time, size) and one per
operation (put/delete, key, value, expiry). Keys and values print as text when
they are UTF-8 without control characters, else as base64, always with their
size. Every block and record is checked as it is printed; the first damage
stops the listing and is reported with the file, offset and LSN (exit status 1).
A WAL file is never repaired here: a torn tail is shown, not truncated.
"""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

from segments import cli_common as common
from segments import record as rec
from segments import wal
from segments._errors import CorruptFile, MidLogCorruption
from segments.segment_reader import SegmentReader
from segments.snapshot import SnapshotReader
from segments.source import FileSource

_KINDS = {rec.PUT: "put", rec.DELETE: "delete"}


@dataclass(frozen=True, kw_only=True, slots=True)
class DumpOptions:
    """What to print: one file, optionally an LSN range, as text or JSON."""

    path: str
    json: bool = False
    from_lsn: int | None = None
    to_lsn: int | None = None
    value_bytes: int = 256

    def __post_init__(self) -> None:
        if self.from_lsn is not None and self.to_lsn is not None and self.from_lsn > self.to_lsn:
            raise ValueError(f"--from-lsn {self.from_lsn} is after --to-lsn {self.to_lsn}")
        if self.value_bytes < 0:
            raise ValueError("--value-bytes must be 0 (no limit) or more")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a WAL file (.wal), archive segment (.seg) or snapshot (.snap)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document (records as a list) instead of text")
    parser.add_argument("--from-lsn", type=int, metavar="LSN", help="first LSN to print (records only)")
    parser.add_argument("--to-lsn", type=int, metavar="LSN", help="last LSN to print (records only)")
    parser.add_argument("--value-bytes", type=int, default=256, metavar="N",
                        help="in text output, show at most N bytes of each value (0: all; default 256)")


def options_from(args: argparse.Namespace) -> DumpOptions:
    return DumpOptions(path=args.file, json=args.json, from_lsn=args.from_lsn, to_lsn=args.to_lsn,
                       value_bytes=args.value_bytes)


@dataclass(slots=True)
class _Listing:
    """What a dump prints: a header, a stream of items, and what was found along the way."""

    kind: str
    header: dict[str, object]
    items: Iterator[dict[str, object]]
    item_name: str = "records"
    findings: list[dict[str, object]] = field(default_factory=list)


def run(options: DumpOptions, out: TextIO) -> int:
    """Print the file; return 0 when everything read was intact, 1 when damage was found."""
    path = options.path
    kind: str | None = None
    try:
        kind = common.detect_kind(path)
        if kind is None:
            raise CorruptFile(f"not a pitr file ({common.describe_magic(path)})", path=path, offset=0)
        listing_of = {common.WAL: _wal_listing, common.SEGMENT: _segment_listing,
                      common.SNAPSHOT: _snapshot_listing}[kind]
        listing = listing_of(options)
    except Exception as exc:
        if not common.is_expected_failure(exc):
            raise
        _print_unreadable(options, kind, exc, out)
        return 1
    error: dict[str, object] | None = None
    if options.json:
        error = _print_json(options, listing, out)
    else:
        error = _print_text(options, listing, out)
    return 1 if error is not None or listing.findings else 0


def _print_unreadable(options: DumpOptions, kind: str | None, exc: BaseException, out: TextIO) -> None:
    if options.json:
        out.write(json.dumps({"path": options.path, "type": kind, "error": common.error_fields(exc),
                              "valid": False}) + "\n")
    else:
        out.write(f"# error: {exc}\n")


def _print_json(options: DumpOptions, listing: _Listing, out: TextIO) -> dict[str, object] | None:
    head = {"path": options.path, "type": listing.kind, "header": listing.header}
    out.write(json.dumps(head)[:-1] + f', "{listing.item_name}": [')
    error = None
    separator = "\n"
    try:
        for item in listing.items:
            out.write(separator + json.dumps(item))
            separator = ",\n"
    except Exception as exc:
        if not common.is_expected_failure(exc):
            raise
        error = common.error_fields(exc)
    valid = error is None and not listing.findings
    out.write("\n], " + json.dumps({"findings": listing.findings, "error": error, "valid": valid})[1:] + "\n")
    return error


def _print_text(options: DumpOptions, listing: _Listing, out: TextIO) -> dict[str, object] | None:
    out.write(f"# {listing.kind} {options.path}\n")
    for key, value in listing.header.items():
        if key not in ("blocks", "pieces"):
            out.write(f"# {key}: {json.dumps(value) if isinstance(value, dict) else value}\n")
    pieces = listing.header.get("pieces", [])
    for piece in pieces if isinstance(pieces, list) else []:
        out.write(f"# piece LSN {piece['first_lsn']}..{piece['last_lsn']}: "
                  f"records digest {piece['records_digest']}\n")
    error = None
    count = 0
    try:
        for item in listing.items:
            out.write(_item_text(item, options.value_bytes))
            count += "block_index" not in item
    except Exception as exc:
        if not common.is_expected_failure(exc):
            raise
        error = common.error_fields(exc)
        out.write(f"# error: {exc}\n")
    out.write(f"# {count} {listing.item_name} shown\n")
    for finding in listing.findings:
        out.write(f"# {finding['finding']}: {finding['message']}\n")
    return error


def _item_text(item: dict[str, object], limit: int) -> str:
    if "block_index" in item:
        b = item
        return (f"# block {b['block_index']} at offset {b['offset']}: LSN {b['first_lsn']}.., "
                f"{b['compressed_size']} B compressed, {b['raw_size']} B raw, {b['records']} records\n")
    if "lsn" not in item:  # a snapshot entry
        line = f"key {_shown(item, 'key', 0)}  value {_shown(item, 'value', limit)}"
        if "expires" in item:
            line += f"  expires {item['expires']}"
        return line + "\n"
    where = f"offset {item['offset']}" if "offset" in item else f"block {item['block']}"
    line = f"lsn {item['lsn']}  time {item['time']}  {where}  size {item['size']}"
    if item.get("skipped"):
        return line + f"  type {item['type']} (unknown record type, skipped)\n"
    if item.get("source_rev") is not None:
        line += f"  source_rev {item['source_rev']}"
    if item.get("gap"):
        line += "  gap (the source lost history before this commit)"
    ops = item["ops"]
    assert isinstance(ops, list)  # record_fields made it
    lines = [line + f"  ops {len(ops)}\n"]
    for op in ops:
        text = f"  {op['op']:<6}  key {_shown(op, 'key', 0)}"
        if op["op"] == "put":
            text += f"  value {_shown(op, 'value', limit)}"
        if "expires" in op:
            text += f"  expires {op['expires']}"
        lines.append(text + "\n")
    return "".join(lines)


def _shown(fields: dict[str, object], name: str, limit: int) -> str:
    if name in fields:
        data = str(fields[name]).encode("utf-8")
    else:
        data = base64.b64decode(str(fields[f"{name}_base64"]))
    return common.show_bytes(data, limit)


def record_fields(record: rec.Record) -> dict[str, object]:
    """JSON fields of one decoded commit record (LSN, time, source revision, operations)."""
    ops: list[dict[str, object]] = []
    for op in record.ops:
        fields: dict[str, object] = {"op": _KINDS.get(op.kind, str(op.kind))}
        fields.update(common.bytes_fields("key", op.key))
        if op.kind == rec.PUT:
            fields.update(common.bytes_fields("value", op.value))
        if op.expires_at_ns is not None:
            fields["expires"] = common.format_time(op.expires_at_ns)
            fields["expires_at_ns"] = op.expires_at_ns
        ops.append(fields)
    fields = {"source_rev": record.source_rev, "ops": ops}
    if record.gap:
        fields["gap"] = True
    return fields


def _span_item(buf: rec.Buffer, span: rec.Span, where: dict[str, object]) -> dict[str, object]:
    item: dict[str, object] = {"lsn": span.lsn, "time": common.format_time(span.ts_ns), "ts_ns": span.ts_ns}
    item.update(where)
    item["size"] = span.end - span.start
    record = rec.decode_payload(buf, span, skip_unknown=True)
    if record is None:
        item.update(type=buf[span.start + 8], skipped=True)
    else:
        item.update(record_fields(record))
    return item


def _in_range(options: DumpOptions, lsn: int) -> bool:
    return (options.from_lsn is None or lsn >= options.from_lsn) and \
        (options.to_lsn is None or lsn <= options.to_lsn)


def _wal_listing(options: DumpOptions) -> _Listing:
    path = options.path
    failure: MidLogCorruption | None = None
    try:
        scan: wal.WalScan | None = wal.scan_wal(path, repair=False)
    except MidLogCorruption as exc:
        scan, failure = None, exc
    with open(path, "rb") as fh:
        data = fh.read()
    if scan is not None:
        header, spans, end = scan.header, scan.spans, scan.end
    else:
        assert failure is not None
        assert failure.offset is not None
        header, end = wal.decode_header(data[: wal.HEADER_SIZE], path), failure.offset
        spans = wal.spans_until(data, header, end)
    head = {
        "store_id": str(header.store_id),
        "first_lsn": header.first_lsn,
        "created": common.format_time(header.created_ts_ns),
        "size": len(data),
        "end": end,
        "records": len(spans),
        "last_lsn": spans[-1].lsn if spans else header.first_lsn - 1,
    }
    listing = _Listing(common.WAL, head, iter(()))
    if scan is not None and scan.torn is not None:
        torn = scan.torn
        listing.findings.append({
            "finding": "torn tail", "offset": torn.offset, "length": torn.length, "reason": torn.reason,
            "message": f"{torn.length} bytes at offset {torn.offset} after the last complete record "
                       f"({torn.reason}); not repaired here, opening the store moves them to "
                       f"{torn.broken_path}",
        })
    if failure is not None:
        listing.findings.append({"finding": "mid-log corruption", **common.error_fields(failure)})

    def items() -> Iterator[dict[str, object]]:
        for span in spans:
            if _in_range(options, span.lsn):
                try:
                    item = _span_item(data, span, {"offset": span.start})
                except CorruptFile as exc:
                    raise exc.located(path=path) from exc
                yield item

    listing.items = items()
    return listing


def _segment_listing(options: DumpOptions) -> _Listing:
    source = FileSource(options.path)
    try:
        reader = SegmentReader(source)
    except BaseException:
        source.close()
        raise
    meta = reader.meta
    h, t = meta.header, meta.trailer
    head = {
        "store_id": str(h.store_id),
        "first_lsn": h.first_lsn,
        "last_lsn": t.last_lsn,
        "first_time": common.format_time(h.first_ts_ns),
        "last_time": common.format_time(t.last_ts_ns),
        "complete_through": common.format_time(t.complete_through_ns),
        "records": t.record_count,
        "raw_bytes": t.raw_bytes,
        "size": meta.size,
        "block_count": t.block_count,
        "prev_chain_digest": h.prev_chain_digest.hex(),
        "chain_digest": t.chain_digest.hex(),
        "file_digest": t.file_digest.hex(),
        "blocks": [{"index": i, "offset": e.offset, "first_lsn": e.first_lsn,
                    "first_time": common.format_time(e.first_ts_ns), "compressed_size": e.compressed_size,
                    "raw_size": e.raw_size, "records": e.record_count} for i, e in enumerate(meta.index)],
        "pieces": [{"first_lsn": p.first_lsn, "last_lsn": p.last_lsn, "records_digest": p.records_digest.hex()}
                   for p in meta.pieces],
    }
    lo = meta.first_lsn if options.from_lsn is None else max(options.from_lsn, meta.first_lsn)
    hi = meta.last_lsn if options.to_lsn is None else min(options.to_lsn, meta.last_lsn)

    def items() -> Iterator[dict[str, object]]:
        with reader:
            if lo > hi:
                return
            for i in range(reader.block_for_lsn(lo), reader.block_for_lsn(hi) + 1):
                entry = meta.index[i]
                if not options.json:
                    yield {"block_index": i, "offset": entry.offset, "first_lsn": entry.first_lsn,
                           "compressed_size": entry.compressed_size, "raw_size": entry.raw_size,
                           "records": entry.record_count}
                raw = reader.read_block(i)
                for span in reader.block_spans(i, raw):
                    if lo <= span.lsn <= hi:
                        try:
                            item = _span_item(raw, span, {"block": i})
                        except CorruptFile as exc:
                            raise CorruptFile(f"block {i}: {exc.reason}", path=options.path, offset=entry.offset,
                                              lsn=exc.lsn, hint=exc.hint) from exc
                        yield item

    return _Listing(common.SEGMENT, head, items())


def _snapshot_listing(options: DumpOptions) -> _Listing:
    source = FileSource(options.path)
    try:
        reader = SnapshotReader(source)
    except BaseException:
        source.close()
        raise
    h = reader.header
    head = {
        "store_id": str(h.store_id),
        "lsn": h.lsn,
        "time": common.format_time(h.ts_ns),
        "chain_digest": h.chain_digest.hex(),
        "entries": h.entry_count,
        "logical_bytes": h.logical_bytes,
        "created": common.format_time(h.created_ns),
        "state_digest": reader.footer.state_digest.hex(),
        "metadata": h.metadata,
    }

    def items() -> Iterator[dict[str, object]]:
        with reader:
            for key, value, expires in reader.iter_entries():
                entry = common.bytes_fields("key", key)
                entry.update(common.bytes_fields("value", value))
                if expires is not None:
                    entry["expires"] = common.format_time(expires)
                    entry["expires_at_ns"] = expires
                yield entry

    return _Listing(common.SNAPSHOT, head, items(), item_name="entries")
