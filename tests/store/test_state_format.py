"""State database format 2 (docs/format.md "State database v2"): the rows' codec, its test
vectors, the running digest kept in the checkpoint, and the refusal of a format 1 state."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import lmdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pitr.cli.main import main
from pitr.datadir.entries import (
    Checkpoint,
    RowDamage,
    decode_checkpoint,
    decode_expiry,
    decode_value,
    encode_checkpoint,
    encode_expiry,
    encode_format,
    encode_value,
)
from pitr.datadir.state import StateDB
from pitr.errors import CorruptData, StateDamaged
from segments.fold import Change

keys = st.binary(min_size=1, max_size=511)
expiries = st.none() | st.integers(-(1 << 63), (1 << 63) - 1)


def test_format_vectors() -> None:
    assert encode_value(b"k", b"v", None).hex() == "003b50ea1376"
    assert encode_value(b"user:1", b"hello", None).hex() == "0061443c9d68656c6c6f"
    assert encode_value(b"user:1", b"hello", 1795961387000000000).hex() == "0139e24ffe18ec895db673ee0068656c6c6f"
    assert encode_expiry(b"user:1", 1795961387000000000).hex() == "18ec895db673ee00f740c485"
    assert encode_format().hex() == "00000002825a3cdf"
    assert encode_checkpoint(Checkpoint(7, 70, 5, 1)).hex() == (
        "0000000000000007" "0000000000000046" "05" + "00" * 31 + "0000000000000001" + "00" * 16 + "309b2085")


@given(key=keys, value=st.binary(max_size=300), expires=expiries)
def test_a_row_decodes_to_what_was_encoded(key: bytes, value: bytes, expires: int | None) -> None:
    assert decode_value(key, encode_value(key, value, expires)) == (value, expires)
    if expires is not None:
        assert decode_expiry(key, encode_expiry(key, expires)) == expires


@given(key=keys, value=st.binary(max_size=64), expires=expiries, data=st.data())
def test_any_changed_byte_or_other_key_is_caught(key: bytes, value: bytes, expires: int | None,
                                                 data: st.DataObject) -> None:
    row = bytearray(encode_value(key, value, expires))
    at = data.draw(st.integers(0, len(row) - 1))
    row[at] ^= data.draw(st.integers(1, 255))
    with pytest.raises(RowDamage):
        decode_value(key, bytes(row))
    other = data.draw(keys.filter(lambda k: k != key))
    with pytest.raises(RowDamage):
        decode_value(other, encode_value(key, value, expires))
    with pytest.raises(RowDamage):
        decode_value(key, encode_value(key, value, expires)[:-1] if value else b"\x00")


@given(lsn=st.integers(0, (1 << 64) - 1), ts=st.integers(-(1 << 63), (1 << 63) - 1),
       total=st.integers(0, (1 << 256) - 1), count=st.integers(0, (1 << 64) - 1))
def test_a_checkpoint_decodes_to_what_was_encoded(lsn: int, ts: int, total: int, count: int) -> None:
    cp = Checkpoint(lsn, ts, total, count, 3, 4)
    assert decode_checkpoint(encode_checkpoint(cp)) == cp


changes = st.dictionaries(st.binary(min_size=1, max_size=4),
                          st.none() | st.binary(max_size=4) | st.tuples(st.binary(max_size=4), st.integers(-3, 3)),
                          max_size=12)


@given(rounds=st.lists(changes, min_size=1, max_size=5), cutoff=st.integers(-4, 4))
def test_the_running_digest_is_the_digest_of_the_rows(tmp_path_factory: pytest.TempPathFactory,
                                                      rounds: list[dict[bytes, Change]], cutoff: int) -> None:
    db = StateDB(str(tmp_path_factory.mktemp("state")))
    try:
        for n, round_ in enumerate(rounds, start=1):
            db.apply(round_, n, n * 10)
            cp = db.stored_checkpoint()
            assert (cp.digest, cp.count) == db.state_digest(None)
        db.drop_expired(cutoff)
        cp = db.stored_checkpoint()
        assert (cp.digest, cp.count) == db.state_digest(None)
        assert cp.applied_lsn == len(rounds)
    finally:
        db.close()


def test_the_digest_covers_rows_appended_by_a_restore(tmp_path: Path) -> None:
    db = StateDB(str(tmp_path / "state"))
    try:
        db.append_sorted(iter([(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]), [(b"b", struct.pack(">q", 5))])
        db.set_checkpoint(9, 90)
        cp = db.stored_checkpoint()
        assert (cp.digest, cp.count) == db.state_digest(None)
        assert db.get(b"b", 4) == (b"2", 5)
        assert db.get(b"b", 5) is None
    finally:
        db.close()


def write_v1_state(path: Path) -> None:
    """A state as the format 1 code wrote it: bare values, checkpoint as two integers."""
    env = lmdb.open(str(path), max_dbs=4, subdir=True)
    try:
        data, meta = env.open_db(b"data"), env.open_db(b"meta")
        env.open_db(b"expiry")
        with env.begin(write=True) as txn:
            txn.put(b"k", b"old value", db=data)
            txn.put(b"applied_lsn", struct.pack(">Q", 1), db=meta)
            txn.put(b"applied_ts_ns", struct.pack(">q", 10), db=meta)
            txn.put(b"identity", json.dumps({"store_id": "9" * 32}).encode(), db=meta)
    finally:
        env.close()


@pytest.mark.parametrize("readonly", [False, True])
def test_a_format_1_state_is_refused_with_the_way_to_rebuild_it(tmp_path: Path, readonly: bool) -> None:
    write_v1_state(tmp_path / "state")
    with pytest.raises(CorruptData, match="format 1") as caught:
        StateDB(str(tmp_path / "state"), readonly=readonly)
    assert not isinstance(caught.value, StateDamaged)
    assert caught.value.hint is not None
    assert "pitr restore --latest" in caught.value.hint


def test_pitr_get_on_a_format_1_store_says_so_without_a_traceback(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data" / "state").mkdir(parents=True, mode=0o700)
    write_v1_state(tmp_path / "data" / "state")
    with pytest.raises(SystemExit) as exit_:
        main(["get", "k", "--json", "--data", str(tmp_path / "data")])
    out = capsys.readouterr()
    assert exit_.value.code == 1
    error = json.loads(out.out or out.err)
    assert error["error"] == "corrupt_data", error
    assert "format 1" in error["message"], error
    assert "Traceback" not in out.err


def test_a_garbled_row_is_refused_naming_the_file_and_key(tmp_path: Path) -> None:
    db = StateDB(str(tmp_path / "state"))
    try:
        db.apply({b"key-1": b"value", b"key-2": b"other"}, 1, 10)
        with db.env.begin(write=True) as txn:  # one byte of the value changes under the checksum
            raw = bytearray(txn.get(b"key-1", db=db.data))
            raw[-1] ^= 1
            txn.put(b"key-1", bytes(raw), db=db.data)
        with pytest.raises(StateDamaged, match=r"data\.mdb.*key b'key-1'.*CRC-32C") as caught:
            db.get(b"key-1", None)
        assert "pitr restore --latest" in (caught.value.hint or "")
        with pytest.raises(StateDamaged, match="key-1"):
            list(db.iter_range(b"", None))
        with pytest.raises(StateDamaged, match="key-1"):  # a miss next to it is checked too
            db.get(b"key-0", None)
    finally:
        db.close()


def test_puts_over_existing_rows_move_the_digest_by_the_difference(tmp_path: Path) -> None:
    db = StateDB(str(tmp_path / "state"))
    try:
        db.apply({b"a": b"1", b"b": (b"2", 50), b"c": b"3"}, 1, 10)
        db.apply({b"a": b"one", b"b": b"two", b"d": b"4"}, 2, 20)  # puts without expiry, over rows
        cp = db.stored_checkpoint()
        assert (cp.digest, cp.count) == db.state_digest(None)
        assert cp.count == 4
        assert db.get(b"b", 60) == (b"two", None)
        with db.read_view() as view:
            assert list(view.expiry_rows()) == []  # the expiry went with the row that had it
    finally:
        db.close()
