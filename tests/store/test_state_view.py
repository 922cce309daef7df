"""`StateDB`'s methods: what callers outside the data directory use instead of raw LMDB handles.

A read view is one consistent read (checkpoint, count, rows, get); dropping expired keys, counting
and syncing are the restore's; every LMDB error is translated, naming the state."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pitr.datadir.state import StateDB, is_live
from pitr.errors import PitrError
from segments import BytesSource, SnapshotHeader, SnapshotReader, SnapshotWriter
from segments.fold import Change
from segments.snapshot import read_header
from tests.segments.strategies import STORE_ID

# (value, expiry or None) per key; expiries around the moments the tests judge at (0..10)
states = st.dictionaries(st.binary(min_size=1, max_size=6),
                         st.tuples(st.binary(max_size=6), st.none() | st.integers(-2, 12)), max_size=25)


def filled(path: Path, state: dict[bytes, tuple[bytes, int | None]]) -> StateDB:
    db = StateDB(str(path))
    changes: dict[bytes, Change] = {k: v if e is None else (v, e) for k, (v, e) in state.items()}
    db.apply(changes, 7, 70)
    return db


@given(state=states, now=st.none() | st.integers(-1, 11), start=st.binary(max_size=3),
       prefix=st.binary(max_size=2))
def test_a_view_reads_one_consistent_state(tmp_path_factory: pytest.TempPathFactory,
                                           state: dict[bytes, tuple[bytes, int | None]], now: int | None,
                                           start: bytes, prefix: bytes) -> None:
    db = filled(tmp_path_factory.mktemp("state"), state)
    try:
        with db.read_view() as view:
            assert db.views_open == 1
            assert view.checkpoint() == (7, 70)
            assert view.count() == len(state)
            live = {k: (v, e) for k, (v, e) in state.items() if e is None or now is None or e > now}
            assert list(view.rows(live_at=now)) == [(k, v, e) for k, (v, e) in sorted(live.items())]
            assert list(view.rows(start, prefix=prefix)) == \
                [(k, v, e) for k, (v, e) in sorted(state.items()) if k >= start and k.startswith(prefix)]
            for key in [*state, b"absent"]:
                assert view.get(key, now) == live.get(key)
        assert db.views_open == 0
    finally:
        db.close()


@given(state=states, cutoff=st.integers(-1, 11))
def test_drop_expired_removes_exactly_the_keys_expired_at_the_cutoff(
        tmp_path_factory: pytest.TempPathFactory, state: dict[bytes, tuple[bytes, int | None]], cutoff: int) -> None:
    db = filled(tmp_path_factory.mktemp("state"), state)
    try:
        expired = {k for k, (_v, e) in state.items() if not is_live(e, cutoff)}
        assert db.drop_expired(cutoff) == len(expired)
        assert db.count() == len(state) - len(expired)
        assert {k for k, _v, _e in db.iter_range(b"", None)} == set(state) - expired
        assert db.checkpoint() == (7, 70)
        db.sync()
    finally:
        db.close()


def test_lmdb_errors_of_every_method_are_translated_naming_the_state(tmp_path: Path) -> None:
    db = StateDB(str(tmp_path / "state"))
    db.close()  # every later call fails inside LMDB
    calls = {"read_view": lambda: db.read_view().__enter__(), "count": db.count, "checkpoint": db.checkpoint,
             "drop_expired": lambda: db.drop_expired(0), "sync": db.sync,
             "append_sorted": lambda: db.append_sorted([(b"k", b"v")], []),
             "set_checkpoint": lambda: db.set_checkpoint(1, 1)}
    for name, call in calls.items():
        with pytest.raises(PitrError, match="state: cannot ") as caught:
            call()
        assert caught.value.__cause__ is not None, f"{name} dropped the LMDB error it translated"


def test_finish_takes_the_chain_digest_into_the_header_before_its_crc_and_the_file_digest() -> None:
    header = SnapshotHeader(STORE_ID, 9, 90, bytes(32), 0, 0, 95, {"store_name": "t"})
    out = io.BytesIO()
    writer = SnapshotWriter(out, header, block_size=16)
    writer.add_many([(b"a", b"1", None), (b"b", b"2", 5)])
    with pytest.raises(ValueError, match="32 bytes"):
        writer.finish(chain_digest=b"short")
    final, _footer = writer.finish(chain_digest=b"\x5a" * 32)
    data = out.getvalue()
    assert final.chain_digest == read_header(BytesSource(data)).chain_digest == b"\x5a" * 32  # its CRC checks
    reader = SnapshotReader(BytesSource(data))
    reader.verify()  # the file digest is of the patched header
    assert list(reader.iter_entries()) == [(b"a", b"1", None), (b"b", b"2", 5)]
