"""Full verification's inner loop: each decompressed archive block's records checked in one pass,
and, when asked, the block's key-table entries computed from the same bytes.

`scan_block` checks every record as `record.check_run` plus the known-type check do (framing,
CRC-32C, dense LSNs, strictly increasing commit times, a known record type). Given a `person`
(the personalisation of the catalog's key digest, `pitr.catalog.keytable`), it also checks each
record's operations as `record.decode_payload` does and returns the block's key-table entries:
for each commit, one 25-byte entry per key digest it touches (`digest u64 | ts + 2**63 u64 |
lsn u64 | kind u8`, bit 0x80 of kind for a put with an expiry), the commit's last operation on
that digest winning, in the order each digest first appears; and the LSNs of the commits
flagged as following a gap in the source. `sort_entries` sorts a table's entries bytewise.

Each has a pure-Python reference (`*_reference`, the specification) and a compiled twin in
`segments._block_scan` (Cython, built at install time, as `segments._block_replay` is). The
names without the suffix are the compiled ones when the extension is built; without it, the
references after one warning, and a run under CI (`CI=true`) refuses to start.
tests/segments/test_block_scan.py holds the two equal, damage included.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from typing import TypeAlias

from segments import record as rec
from segments._errors import CorruptFile
from segments.compiled import compiled_module

ScanResult: TypeAlias = tuple[int, int, int, list[int], bytes, list[int]]
"""(records, first commit time, last commit time, each record's end offset, key-table entries, gap LSNs)."""

ENTRY = struct.Struct(">QQQB")
ENTRY_SIZE = ENTRY.size  # 25
TS_BIAS = 1 << 63
KIND_EXPIRY = 0x80
UNKNOWN_TYPE_HINT = rec.UNKNOWN_TYPE_HINT


def key_digest_reference(key: bytes, person: bytes) -> bytes:
    """The 8-byte BLAKE2b digest of `key` with personalisation `person` (at most 16 bytes)."""
    return hashlib.blake2b(key, digest_size=8, person=person).digest()


def scan_block_reference(buf: bytes, first_lsn: int, after_ts_ns: int, person: bytes | None = None) -> ScanResult:
    """Check every record of `buf` (the records first_lsn, first_lsn + 1, ... with commit times strictly
    increasing after `after_ts_ns`); with `person`, also their operations, and compute the entries.

    Raises CorruptFile (offset relative to `buf`) at the first record that breaks a rule.
    """
    op_header = rec.OP_HEADER.unpack_from
    pos, end = 0, len(buf)
    expected, prev_ts, first_ts = first_lsn, after_ts_ns, after_ts_ns
    ends: list[int] = []
    entries: list[bytes] = []
    gaps: list[int] = []
    while pos < end:
        flags, count, lsn, ts, stop = rec.check_commit_at(buf, pos, end, expected, prev_ts)
        if person is not None:
            if flags & rec.FLAG_GAP:
                gaps.append(lsn)
            p = pos + rec.HEADER_SIZE
            if flags & rec.FLAG_SOURCE_REV:
                if stop - p < 8:
                    raise CorruptFile("source revision runs past the record", offset=pos, lsn=lsn)
                p += 8
            if count == 0 or count > (stop - p) // rec.OP_HEADER.size:
                raise CorruptFile(f"operation count {count} does not fit the record", offset=pos, lsn=lsn)
            latest: dict[bytes, bytes] = {}
            for _ in range(count):
                if stop - p < rec.OP_HEADER.size:
                    raise CorruptFile("operation header runs past the record", offset=pos, lsn=lsn)
                kind, oflags, _r, klen, vlen = op_header(buf, p)
                p += rec.OP_HEADER.size
                expiring = bool(oflags & rec.OP_FLAG_EXPIRY)
                if expiring:
                    if stop - p < 8:
                        raise CorruptFile("expiry runs past the record", offset=pos, lsn=lsn)
                    p += 8
                if klen > rec.MAX_KEY or vlen > rec.MAX_VALUE or klen + vlen > stop - p:
                    raise CorruptFile("key or value length runs past the record", offset=pos, lsn=lsn)
                if kind == rec.DELETE:
                    if vlen or expiring:
                        raise CorruptFile("delete carries a value or expiry", offset=pos, lsn=lsn)
                elif kind != rec.PUT:
                    raise CorruptFile(f"unknown operation kind {kind}", offset=pos, lsn=lsn)
                digest = key_digest_reference(buf[p : p + klen], person)
                latest[digest] = digest + ENTRY.pack(0, ts + TS_BIAS, lsn, kind | (KIND_EXPIRY if expiring else 0))[8:]
                p += klen + vlen
            if p != stop:
                raise CorruptFile(f"{stop - p} stray bytes after the last operation", offset=pos, lsn=lsn)
            entries.extend(latest.values())
        if not ends:
            first_ts = ts
        ends.append(stop)
        expected = lsn + 1
        prev_ts = ts
        pos = stop
    return len(ends), first_ts, prev_ts, ends, b"".join(entries), gaps


def sort_entries_reference(entries: bytes) -> bytes:
    """The 25-byte entries of `entries` in bytewise order (ValueError unless it is whole entries)."""
    if len(entries) % ENTRY_SIZE:
        raise ValueError(f"{len(entries)} bytes are not whole {ENTRY_SIZE}-byte entries")
    return b"".join(sorted(entries[i : i + ENTRY_SIZE] for i in range(0, len(entries), ENTRY_SIZE)))


ScanBlock = Callable[[bytes, int, int, "bytes | None"], ScanResult]
SortEntries = Callable[[bytes], bytes]
KeyDigest = Callable[[bytes, bytes], bytes]


def _load() -> tuple[ScanBlock, SortEntries, KeyDigest, bool]:
    compiled = compiled_module("segments._block_scan", 'verification runs the pure-Python scan')
    if compiled is None:
        return scan_block_reference, sort_entries_reference, key_digest_reference, False
    return compiled.scan_block, compiled.sort_entries, compiled.key_digest, True


scan_block, sort_entries, key_digest, COMPILED = _load()
