"""A restore's inner loop: each decompressed archive block checked and folded in one pass.

`replay_block` checks every record of a block as full verification does (framing, CRC-32C,
dense LSNs, strictly increasing commit times, a known record type, well-formed operations)
and folds the operations of the records in the restore's range into a key -> change map.
`live_rows` turns the final map into the rows of a fresh LMDB state, in key order.

Each has a pure-Python reference (`*_reference`, the specification) and a compiled twin in
`segments._block_replay` (Cython, built at install time). The names without the suffix are
the compiled ones when the extension is built; without it they are the references, after
one warning, and a run under CI (`CI=true`) refuses to start: a missing build there is a
defect. tests/segments/test_block_replay.py holds the two equal, damage included.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TypeAlias

from segments import record as rec
from segments._errors import CorruptFile
from segments.compiled import compiled_module
from segments.fold import Change

BlockResult: TypeAlias = tuple[int, int, int, "list[int] | None"]
"""(records in the block, first commit time, last commit time, each record's end offset when asked)."""
Rows: TypeAlias = tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]], int]
"""(key, value) puts, (key, i64 big-endian expiry) for the puts that have one, how many expired."""

UNKNOWN_TYPE_HINT = rec.UNKNOWN_TYPE_HINT
_I64BE = struct.Struct(">q")


def replay_block_reference(buf: bytes, changes: dict[bytes, Change], first_lsn: int, after_ts_ns: int,
                           fold_from: int, fold_to: int, want_ends: bool = False) -> BlockResult:
    """Check every record of `buf` and fold those with fold_from <= LSN <= fold_to into `changes`.

    LSN arguments are LSNs (0 .. 2**64 - 1; the compiled twin refuses others with OverflowError).
    The records must be first_lsn, first_lsn + 1, ... with commit times strictly increasing
    after `after_ts_ns`. Raises CorruptFile (offset relative to `buf`) at the first record
    that breaks a rule; `changes` may then hold part of the block. Records outside the range
    are checked all the same: a block is verified whole or refused.
    """
    op_header = rec.OP_HEADER.unpack_from
    i64 = rec.I64.unpack_from
    pos, end = 0, len(buf)
    expected, prev_ts, first_ts = first_lsn, after_ts_ns, after_ts_ns
    records = 0
    ends: list[int] | None = [] if want_ends else None
    while pos < end:
        flags, count, lsn, ts, stop = rec.check_commit_at(buf, pos, end, expected, prev_ts)
        fold = fold_from <= lsn <= fold_to
        p = pos + rec.HEADER_SIZE
        if flags & rec.FLAG_SOURCE_REV:
            if stop - p < 8:
                raise CorruptFile("source revision runs past the record", offset=pos, lsn=lsn)
            p += 8
        if count == 0 or count > (stop - p) // rec.OP_HEADER.size:
            raise CorruptFile(f"operation count {count} does not fit the record", offset=pos, lsn=lsn)
        for _ in range(count):
            if stop - p < rec.OP_HEADER.size:
                raise CorruptFile("operation header runs past the record", offset=pos, lsn=lsn)
            kind, oflags, _r, klen, vlen = op_header(buf, p)
            p += rec.OP_HEADER.size
            expires = None
            if oflags & rec.OP_FLAG_EXPIRY:
                if stop - p < 8:
                    raise CorruptFile("expiry runs past the record", offset=pos, lsn=lsn)
                (expires,) = i64(buf, p)
                p += 8
            if klen > rec.MAX_KEY or vlen > rec.MAX_VALUE or klen + vlen > stop - p:
                raise CorruptFile("key or value length runs past the record", offset=pos, lsn=lsn)
            if kind == rec.PUT:
                if fold:
                    value = buf[p + klen : p + klen + vlen]
                    changes[buf[p : p + klen]] = value if expires is None else (value, expires)
                p += klen + vlen
            elif kind == rec.DELETE:
                if vlen or expires is not None:
                    raise CorruptFile("delete carries a value or expiry", offset=pos, lsn=lsn)
                if fold:
                    changes[buf[p : p + klen]] = None
                p += klen
            else:
                raise CorruptFile(f"unknown operation kind {kind}", offset=pos, lsn=lsn)
        if p != stop:
            raise CorruptFile(f"{stop - p} stray bytes after the last operation", offset=pos, lsn=lsn)
        if records == 0:
            first_ts = ts
        records += 1
        if ends is not None:
            ends.append(stop)
        expected = lsn + 1
        prev_ts = ts
        pos = stop
    return records, first_ts, prev_ts, ends


def live_rows_reference(merged: dict[bytes, Change], cutoff_ns: int) -> Rows:
    """The rows of a state holding `merged` at the cutoff, in key order (LMDB's: bytewise, a
    prefix first): deletes left out, puts whose expiry is at or before the cutoff counted and
    left out."""
    puts: list[tuple[bytes, bytes]] = []
    expiring: list[tuple[bytes, bytes]] = []
    expired = 0
    for key in sorted(merged):
        if type(key) is not bytes:
            raise TypeError(f"keys must be bytes, not {type(key).__name__}")
        change = merged[key]
        if change is None:
            continue
        if type(change) is bytes:
            puts.append((key, change))
            continue
        if type(change) is not tuple or len(change) != 2:
            raise TypeError(f"a change is bytes, (bytes, int) or None, not {change!r}")
        value, expires = change
        if expires <= cutoff_ns:
            expired += 1
            continue
        expiring.append((key, _I64BE.pack(expires)))
        puts.append((key, value))
    return puts, expiring, expired


ReplayBlock = Callable[[bytes, dict[bytes, Change], int, int, int, int, bool], BlockResult]
LiveRows = Callable[[dict[bytes, Change], int], Rows]


def _load() -> tuple[ReplayBlock, LiveRows, bool]:
    _block_replay = compiled_module("segments._block_replay", 'restores run the pure-Python replay')
    if _block_replay is None:
        return replay_block_reference, live_rows_reference, False
    return _block_replay.replay_block, _block_replay.live_rows, True


replay_block, live_rows, COMPILED = _load()
