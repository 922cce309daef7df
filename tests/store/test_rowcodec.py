"""The state's batch row codec: the pure-Python references are the specification, and the compiled
module gives the same results and finds the same first bad row, damaged rows included."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pitr.datadir import _rowcodec as compiled  # type: ignore[attr-defined]  # built by `pip install -e .`
from pitr.datadir import rowcodec
from pitr.datadir.entries import decode_value, encode_value
from segments.snapshot import encode_entry

KEYS = st.binary(min_size=1, max_size=12)
EXPIRY = st.none() | st.integers(-(1 << 63), (1 << 63) - 1)


@st.composite
def entries(draw: st.DrawFn) -> list[tuple[bytes, bytes, int | None]]:
    keys = draw(st.lists(KEYS, max_size=20, unique=True))
    if draw(st.integers(0, 3)):
        keys.sort()  # most scans see keys in order; some batches test the order check
    return [(key, draw(st.binary(max_size=20)), draw(EXPIRY)) for key in keys]


def damage(draw: st.DrawFn, raw: bytes) -> bytes:
    """`raw` with one kind of damage: a flipped bit, a cut, a bad flags byte."""
    how = draw(st.sampled_from(["flip", "cut", "flags"]))
    if how == "flip":
        at = draw(st.integers(0, len(raw) - 1))
        return raw[:at] + bytes([raw[at] ^ (1 << draw(st.integers(0, 7)))]) + raw[at + 1:]
    if how == "cut":
        return raw[:draw(st.integers(0, len(raw) - 1))]
    return bytes([draw(st.integers(2, 255))]) + raw[1:]


@st.composite
def scans(draw: st.DrawFn) -> tuple[list[tuple[bytes, bytes]], bytes, bytes | None, bytes, int | None, bool]:
    rows = [(key, encode_value(key, value, expires)) for key, value, expires in draw(entries())]
    if rows and draw(st.integers(0, 3)):
        at = draw(st.integers(0, len(rows) - 1))
        rows[at] = (rows[at][0], damage(draw, rows[at][1]))
    # mostly whole scans, so that the damage is reached; some with a start, a stop or a prefix
    previous = b"" if draw(st.integers(0, 3)) else draw(KEYS)
    stop = None if draw(st.integers(0, 3)) else draw(KEYS)
    prefix = b"" if draw(st.integers(0, 3)) else draw(st.binary(min_size=1, max_size=2))
    live_at = draw(st.none() | st.integers(-(1 << 63), (1 << 63) - 1))
    return rows, previous, stop, prefix, live_at, draw(st.booleans())


@given(scans())
def test_compiled_scan_equals_the_reference(scan: tuple[list[tuple[bytes, bytes]], bytes, bytes | None, bytes,
                                                        int | None, bool]) -> None:
    assert compiled.scan_rows(*scan) == rowcodec.scan_rows_reference(*scan)


@given(entries())
def test_compiled_encoding_equals_the_reference(batch: list[tuple[bytes, bytes, int | None]]) -> None:
    keys, values, expiries = [e[0] for e in batch], [e[1] for e in batch], [e[2] for e in batch]
    assert compiled.encode_rows(keys, values, expiries) == rowcodec.encode_rows_reference(keys, values, expiries)


@given(entries())
def test_encoded_rows_decode_and_scan_back(batch: list[tuple[bytes, bytes, int | None]]) -> None:
    """What the encoder writes, the scan reads back: each row decodes to its entry, and a scan in key
    order yields every entry, or its snapshot encoding."""
    batch.sort()
    keys, values, expiries = [e[0] for e in batch], [e[1] for e in batch], [e[2] for e in batch]
    rows, encoded = rowcodec.encode_rows(keys, values, expiries)
    assert [decode_value(key, row) for key, row in zip(keys, rows, strict=True)] == list(zip(values, expiries,
                                                                                                strict=True))
    assert encoded == [encode_entry(*entry) for entry in batch]
    assert rowcodec.scan_rows(list(zip(keys, rows, strict=True)), b"", None, b"", None, False) == (
        list(batch), keys[-1] if keys else b"", False, -1, 0)


def test_a_flipped_value_byte_is_found_by_both() -> None:
    """One flipped byte in the middle row's value: both paths stop at it and keep the rows before."""
    rows = [(key, encode_value(key, b"value-" + key, None)) for key in (b"a", b"b", b"c")]
    key, raw = rows[1]
    rows[1] = (key, raw[:-1] + bytes([raw[-1] ^ 0x01]))
    for scan in (compiled.scan_rows, rowcodec.scan_rows_reference):
        assert scan(rows, b"", None, b"", None, False) == ([(b"a", b"value-a", None)], b"a", False, 1,
                                                            rowcodec.ROW_DAMAGED)
