"""The receipt of a state built by one unhashed append (`receipt_of_append`): every row read back
must be exactly the entry of the merged map it came from, and the digest of the rows read back is
the state's digest.

The merged build (a base and the changes merged in memory, the 1M-commit restore) encodes its rows
once (`sorted_rows`), appends them without hashing (`StateDB.append_rows`) and reads them back
against the map's own keys and changes, summing the digest in the same pass; these tests hold
that it refuses what the two-digest receipt refused, and names the row.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pitr.datadir import build
from pitr.datadir.build import SortedRows, sorted_rows
from pitr.datadir.entries import encode_value
from pitr.datadir.state import StateDB
from pitr.errors import CorruptData, InvalidArgument
from pitr.restore.receipt import receipt_of_append
from segments.fold import Change

MERGED: dict[bytes, Change] = {b"d": (b"4", 9_000), b"a": b"1", b"c": b"333", b"x": None, b"b": (b"22", 7_000),
                               b"gone": (b"0", 5)}


def built(tmp_path: Path, rows: SortedRows | None = None) -> tuple[StateDB, SortedRows]:
    entries = sorted_rows(dict(MERGED), 100) if rows is None else rows
    db = StateDB(str(tmp_path / "state"), sync=False)
    db.append_rows(entries.rows, entries.expiring)
    return db, entries


def test_the_rows_are_the_live_entries_in_key_order(tmp_path: Path) -> None:
    entries = sorted_rows(dict(MERGED), 100)
    assert entries.keys == [b"a", b"b", b"c", b"d"]
    assert entries.changes == [b"1", (b"22", 7_000), b"333", (b"4", 9_000)]
    assert [row for _key, row in entries.rows] == [encode_value(b"a", b"1", None), encode_value(b"b", b"22", 7_000),
                                                    encode_value(b"c", b"333", None), encode_value(b"d", b"4", 9_000)]
    assert (entries.expiring, entries.expired) == ([(b"b", 7_000), (b"d", 9_000)], 1)


def test_the_receipt_is_the_digest_of_the_rows_and_is_kept(tmp_path: Path) -> None:
    db, entries = built(tmp_path)
    try:
        digest = receipt_of_append(db, entries)
        assert (digest, 4) == db.state_digest(None)
        kept = db.stored_checkpoint()
        assert (kept.digest, kept.count) == (digest, 4)
        assert db.get(b"b", None) == (b"22", 7_000)
    finally:
        db.close()


def test_the_receipt_equals_the_running_digest_of_a_hashed_append(tmp_path: Path) -> None:
    hashed = StateDB(str(tmp_path / "hashed"), sync=False)
    db, entries = built(tmp_path)
    try:
        hashed.append_sorted([(b"a", b"1"), (b"b", b"22"), (b"c", b"333"), (b"d", b"4")],
                             [(b"b", (7_000).to_bytes(8, "big")), (b"d", (9_000).to_bytes(8, "big"))])
        assert receipt_of_append(db, entries) == hashed.stored_checkpoint().digest
    finally:
        db.close()
        hashed.close()


@pytest.mark.parametrize(("index", "what"), [(1, "value"), (3, "expiry"), (2, "key")])
def test_a_row_written_other_than_the_map_holds_is_refused_by_key(tmp_path: Path, index: int, what: str) -> None:
    """A well-formed row (its CRC matches) of another value, expiry or key than the map's entry:
    what an encoder bug would write. The receipt compares with the map, not with the rows."""
    entries = sorted_rows(dict(MERGED), 100)
    key = entries.keys[index]
    change = entries.changes[index]
    value, expires = (change, None) if isinstance(change, bytes) else change
    if what == "value":
        entries.rows[index] = (key, encode_value(key, b"X" * len(value), expires))
    elif what == "expiry":
        entries.rows[index] = (key, encode_value(key, value, (expires or 0) + 1))
    else:
        entries.keys[index] = key + b"!"  # the map says another key than the row written
    db, _ = built(tmp_path, entries)
    try:
        with pytest.raises(CorruptData, match=rf"restore receipt: .*row {index} \(key b'{key.decode()}'\) reads "
                                              "back other than the build wrote it"):
            receipt_of_append(db, entries)
    finally:
        db.close()


def test_a_row_failing_its_checks_is_refused_by_key(tmp_path: Path) -> None:
    entries = sorted_rows(dict(MERGED), 100)
    key, row = entries.rows[2]
    entries.rows[2] = (key, row[:-1] + bytes([row[-1] ^ 1]))  # its CRC no longer matches
    db, _ = built(tmp_path, entries)
    try:
        with pytest.raises(CorruptData, match=r"restore receipt: .*row 2 \(key b'c'\) fails its checks"):
            receipt_of_append(db, entries)
    finally:
        db.close()


def test_rows_missing_or_extra_are_refused(tmp_path: Path) -> None:
    db, entries = built(tmp_path)
    try:
        more = SortedRows(entries.rows, [*entries.keys, b"e"], [*entries.changes, b"5"], entries.expiring, 0)
        with pytest.raises(CorruptData, match=r"holds 4 rows, the build wrote more \(the next: key b'e'\)"):
            receipt_of_append(db, more)
        fewer = SortedRows(entries.rows, entries.keys[:3], entries.changes[:3], entries.expiring, 0)
        with pytest.raises(CorruptData, match="holds more rows than the 3 the build wrote"):
            receipt_of_append(db, fewer)
    finally:
        db.close()


def test_more_rows_than_one_batch_are_all_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "READ_BATCH", 3)
    merged: dict[bytes, Change] = {f"k{i:03}".encode(): str(i).encode() for i in range(10)}
    entries = sorted_rows(dict(merged), 0)
    db, _ = built(tmp_path, entries)
    try:
        assert receipt_of_append(db, entries) == db.state_digest(None)[0]
        short = SortedRows(entries.rows, entries.keys[:7], entries.changes[:7], [], 0)
        with pytest.raises(CorruptData, match="holds more rows than the 7 the build wrote"):
            receipt_of_append(db, short)
        entries.changes[8] = b"other"
        with pytest.raises(CorruptData, match=r"row 8 \(key b'k008'\) reads back other"):
            receipt_of_append(db, entries)
    finally:
        db.close()


def test_an_unhashed_append_is_for_an_empty_state_only(tmp_path: Path) -> None:
    db, entries = built(tmp_path)
    try:
        receipt_of_append(db, entries)
        with pytest.raises(InvalidArgument, match="empty state only"):
            db.append_rows([(b"e", encode_value(b"e", b"5", None))], [])
        with pytest.raises(InvalidArgument, match="empty state only"):
            db.append_sorted([(b"e", b"5")], [], predict=False)
    finally:
        db.close()


def test_rows_out_of_key_order_are_refused_by_the_append(tmp_path: Path) -> None:
    db = StateDB(str(tmp_path / "state"), sync=False)
    try:
        with pytest.raises(InvalidArgument, match="do not sort after"):
            db.append_rows([(b"b", encode_value(b"b", b"1", None)), (b"a", encode_value(b"a", b"1", None))], [])
    finally:
        db.close()


def test_a_digest_stored_for_another_count_is_refused(tmp_path: Path) -> None:
    db, _entries = built(tmp_path)
    try:
        with pytest.raises(CorruptData, match="its checkpoint counts 4 keys, its rows read back 3"):
            db.store_digest(1, 3)
    finally:
        db.close()
