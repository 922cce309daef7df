"""The receipt of a state built by one unhashed append (`receipt_of_append`): every row read back
must be exactly the entry written, and the digest of the rows read back is the state's digest.

The merged build (a base and the changes merged in memory, the 1M-commit restore) appends its rows
without hashing them and hashes them once, as the receipt reads them back; these tests hold that
it refuses what the two-digest receipt refused, and names the row.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pitr.datadir import state as state_module
from pitr.datadir.state import StateDB
from pitr.errors import CorruptData, InvalidArgument
from pitr.restore.receipt import receipt_of_append

PUTS = [(b"a", b"1"), (b"b", b"22"), (b"c", b"333"), (b"d", b"4")]
EXPIRING = [(b"b", struct.pack(">q", 7_000)), (b"d", struct.pack(">q", 9_000))]


def built(tmp_path: Path) -> StateDB:
    db = StateDB(str(tmp_path / "state"), sync=False)
    db.append_sorted(PUTS, EXPIRING, predict=False)
    return db


def test_the_receipt_is_the_digest_of_the_rows_and_is_kept(tmp_path: Path) -> None:
    db = built(tmp_path)
    try:
        digest = receipt_of_append(db, PUTS, EXPIRING)
        assert (digest, 4) == db.state_digest(None)
        kept = db.stored_checkpoint()
        assert (kept.digest, kept.count) == (digest, 4)
    finally:
        db.close()


def test_the_receipt_equals_the_running_digest_of_a_hashed_append(tmp_path: Path) -> None:
    hashed = StateDB(str(tmp_path / "hashed"), sync=False)
    db = built(tmp_path)
    try:
        hashed.append_sorted(PUTS, EXPIRING)
        assert receipt_of_append(db, PUTS, EXPIRING) == hashed.stored_checkpoint().digest
    finally:
        db.close()
        hashed.close()


@pytest.mark.parametrize(("index", "what"), [(1, "value"), (3, "expiry")])
def test_a_row_written_other_than_the_build_meant_is_refused_by_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: int, what: str) -> None:
    real = state_module.encode_rows

    def garbling(keys: list[bytes], values: list[bytes], exps: list[int | None]) -> tuple[list[bytes], list[bytes]]:
        values, exps = list(values), list(exps)
        if what == "value":
            values[index] = b"X" * len(values[index])  # a well-formed row (its CRC matches) of another value
        else:
            exps[index] = (exps[index] or 0) + 1
        return real(keys, values, exps)

    monkeypatch.setattr(state_module, "encode_rows", garbling)
    db = built(tmp_path)
    try:
        with pytest.raises(CorruptData, match=rf"restore receipt: .*row {index} \(key b'{PUTS[index][0].decode()}'\)"):
            receipt_of_append(db, PUTS, EXPIRING)
    finally:
        db.close()


def test_rows_missing_or_extra_are_refused(tmp_path: Path) -> None:
    db = built(tmp_path)
    try:
        with pytest.raises(CorruptData, match=r"holds 4 rows, the build wrote more \(the next: key b'e'\)"):
            receipt_of_append(db, [*PUTS, (b"e", b"5")], EXPIRING)
        with pytest.raises(CorruptData, match="holds more rows than the 3 the build wrote"):
            receipt_of_append(db, PUTS[:3], EXPIRING)
    finally:
        db.close()


def test_an_unhashed_append_is_for_an_empty_state_only(tmp_path: Path) -> None:
    db = built(tmp_path)
    try:
        receipt_of_append(db, PUTS, EXPIRING)
        with pytest.raises(InvalidArgument, match="empty state only"):
            db.append_sorted([(b"e", b"5")], [], predict=False)
    finally:
        db.close()


def test_a_digest_stored_for_another_count_is_refused(tmp_path: Path) -> None:
    db = built(tmp_path)
    try:
        with pytest.raises(CorruptData, match="its checkpoint counts 4 keys, its rows read back 3"):
            db.store_digest(1, 3)
    finally:
        db.close()
