"""`SnapshotWriter.add_many`, which encodes and hashes a batch of entries at a time, against `add`.

`add` one entry at a time is the reference: for the same entries, in any
batch size, `add_many` must write the same file byte for byte (blocks cut at
the same entries, the same state digest), and refuse what `add` refuses at the
same entry, with the entries before it added.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segments import BytesSource, SnapshotReader, SnapshotWriter
from segments import record as rec
from segments import snapshot as snap
from segments.snapshot_encode import digest_terms, encode_entries
from tests.segments.strategies import expiries
from tests.segments.test_snapshot import HEADER, Entry, sorted_entries

states = st.dictionaries(st.binary(max_size=20), st.tuples(st.binary(max_size=80), expiries), max_size=60)


def one_by_one(entries: list[Entry], block_size: int) -> bytes:
    out = io.BytesIO()
    writer = SnapshotWriter(out, HEADER, block_size=block_size)
    for key, value, expires in entries:
        writer.add(key, value, expires)
    writer.finish()
    return out.getvalue()


def batched(entries: list[Entry], block_size: int, batch_size: int) -> bytes:
    out = io.BytesIO()
    writer = SnapshotWriter(out, HEADER, block_size=block_size)
    writer.add_many(iter(entries), batch_size=batch_size)
    writer.finish()
    return out.getvalue()


@settings(deadline=None)
@given(state=states, block_size=st.integers(1, 600), batch_size=st.integers(1, 70))
def test_batches_write_the_same_file(state: dict[bytes, tuple[bytes, int | None]], block_size: int,
                                     batch_size: int) -> None:
    entries = sorted_entries(state)
    data = batched(entries, block_size, batch_size)
    assert data == one_by_one(entries, block_size)
    reader = SnapshotReader(BytesSource(data))
    reader.verify()
    assert list(reader.iter_entries()) == entries


@settings(deadline=None)
@given(state=states)
def test_encoding_and_digest_terms_match_the_reference(state: dict[bytes, tuple[bytes, int | None]]) -> None:
    entries = sorted_entries(state)
    keys = [k for k, _v, _e in entries]
    values = [v for _k, v, _e in entries]
    exps = [e for _k, _v, e in entries]
    encoded = encode_entries(keys, values, exps)
    assert encoded == [snap.encode_entry(k, v, e) for k, v, e in entries]
    assert digest_terms(encoded) == sum(snap.entry_digest(k, v, e) for k, v, e in entries)


@pytest.mark.parametrize("fault", ["order", "duplicate", "key size", "value size"])
def test_a_refused_entry_is_refused_as_add_refuses_it(fault: str) -> None:
    entries: list[Entry] = [(b"k%03d" % i, b"v" * 10, None) for i in range(20)]
    if fault == "order":
        entries[13] = (b"k000", b"v", None)
    elif fault == "duplicate":
        entries[13] = entries[12]
    elif fault == "key size":
        entries[13] = (b"k012" + b"x" * rec.MAX_KEY, b"v", None)
    else:
        entries[13] = (b"k013", b"\0" * (rec.MAX_VALUE + 1), None)
    outcomes = []
    for add in (add_one_by_one, add_batched):
        out = io.BytesIO()
        writer = SnapshotWriter(out, HEADER, block_size=64)
        with pytest.raises(ValueError, match="increasing|exceeds") as caught:
            add(writer, entries)
        writer.finish()
        outcomes.append((str(caught.value), out.getvalue()))
    assert outcomes[0] == outcomes[1]


def add_one_by_one(writer: SnapshotWriter, entries: list[Entry]) -> None:
    for key, value, expires in entries:
        writer.add(key, value, expires)


def add_batched(writer: SnapshotWriter, entries: list[Entry]) -> None:
    writer.add_many(entries, batch_size=8)
