"""The state's data rows a batch at a time: checked as a scan reads them, encoded as a restore appends them.

`scan_rows` and `encode_rows` are the compiled twins in `pitr.datadir._rowcodec`
(built at install, as `segments._block_replay` is) when they are built, else
the pure-Python references below, which state the rules one row at a time
through `pitr.datadir.entries`. tests/store/test_rowcodec.py holds the two
equal on random and damaged rows. The compiled scan only finds the first bad
row; the caller asks the reference decoder why it is bad, so both paths give
the same message.
"""

from __future__ import annotations

from collections.abc import Callable

from pitr.datadir.entries import RowDamage, decode_value, encode_value
from segments.compiled import compiled_module

ROW_DAMAGED = 1  # a row failed its layout or its CRC-32C
OUT_OF_ORDER = 2  # a key did not sort after the one before it

# (out, last key, ended, index of the first bad row or -1, ROW_DAMAGED | OUT_OF_ORDER | 0)
ScanResult = tuple[list[object], bytes, bool, int, int]
ScanRows = Callable[[list[tuple[bytes, bytes]], bytes, "bytes | None", bytes, "int | None", bool], ScanResult]
EncodeRows = Callable[[list[bytes], list[bytes], "list[int | None]"], tuple[list[bytes], list[bytes]]]


def scan_rows_reference(batch: list[tuple[bytes, bytes]], previous: bytes, stop: bytes | None, prefix: bytes,
                        live_at: int | None, encode: bool) -> ScanResult:
    """Check a scan's next rows (key, raw data row) in order.

    Each row must pass its checks and sort after `previous`. A key at or past `stop`, or outside
    `prefix`, ends the scan (`ended`, after it was checked). Rows expired at `live_at` are left
    out. `out` holds (key, value, expiry) per row, or with `encode` the row's snapshot entry
    encoding (what the state digest hashes). On a bad row the scan stops there and says which
    and why (`out` holds the good rows before it)."""
    from segments.snapshot import encode_entry  # zstandard and blake3: not at the start of every read

    out: list[object] = []
    for index, (key, raw) in enumerate(batch):
        try:
            value, expires = decode_value(key, raw)
        except RowDamage:
            return out, previous, False, index, ROW_DAMAGED
        if key <= previous:
            return out, previous, False, index, OUT_OF_ORDER
        previous = key
        if (stop is not None and key >= stop) or (prefix and not key.startswith(prefix)):
            return out, previous, True, -1, 0
        if expires is not None and live_at is not None and expires <= live_at:
            continue
        out.append(encode_entry(key, value, expires) if encode else (key, value, expires))
    return out, previous, False, -1, 0


def encode_rows_reference(keys: list[bytes], values: list[bytes],
                          expiries: list[int | None]) -> tuple[list[bytes], list[bytes]]:
    """The data rows of the entries, and their snapshot entry encodings (for the state digest)."""
    from segments.snapshot import encode_entry

    rows = [encode_value(key, value, expires) for key, value, expires in zip(keys, values, expiries, strict=True)]
    entries = [encode_entry(key, value, expires) for key, value, expires in zip(keys, values, expiries, strict=True)]
    return rows, entries


def _load() -> tuple[ScanRows, EncodeRows, bool]:
    compiled = compiled_module("pitr.datadir._rowcodec", 'scans and restores of the state check its rows in pure Python')
    if compiled is None:
        return scan_rows_reference, encode_rows_reference, False
    return compiled.scan_rows, compiled.encode_rows, True


scan_rows, encode_rows, COMPILED = _load()
