"""The snapshot's fast paths agree with their reference paths, on random and on damaged input.

Each fast path copies the logic of a reference function beside it in `segments/snapshot.py`:
`SnapshotReader.block_changes` (the restore's decoding of a base block) copies
`SnapshotReader.entry_spans`; the writer's and the verifier's digests of an entry's encoding
(`StateDigest.add_encoded`) stand for `entry_digest` of the decoded entry.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from segments import BytesSource, CorruptFile, SnapshotHeader, SnapshotReader, SnapshotWriter, StateDigest
from segments import record as rec
from segments import snapshot as snap
from segments.fold import Change
from tests.segments.strategies import STORE_ID

Entry = tuple[bytes, bytes, int | None]
# Expiries: none, the extremes, and ordinary moments (so "expired" and "live" both occur downstream).
expiries = st.none() | st.sampled_from([rec.MIN_I64, -1, 0, 1, rec.MAX_I64]) | st.integers(rec.MIN_I64, rec.MAX_I64)
states = st.dictionaries(st.binary(max_size=12), st.tuples(st.binary(max_size=40), expiries), max_size=60)
HEADER = SnapshotHeader(STORE_ID, 7, 1_795_961_387_250_000_000, b"\x01" * 32, 0, 0, 1_795_961_390_000_000_000,
                        {"store_name": "seams"})


def snapshot_of(entries: list[Entry], block_size: int) -> SnapshotReader:
    out = io.BytesIO()
    writer = SnapshotWriter(out, HEADER, block_size=block_size)
    writer.add_many(entries)
    writer.finish()
    return SnapshotReader(BytesSource(out.getvalue(), "seams.snap"))


def reference_changes(reader: SnapshotReader, i: int, raw: bytes) -> list[tuple[bytes, Change]]:
    """`block_changes` through the reference decoder."""
    return [(key, value if expires is None else (value, expires))
            for key, value, expires, _end in reader.entry_spans(i, raw)]


def outcome(decode: Callable[..., object], *args: object) -> tuple[str, object]:
    """("ok", result) or ("corrupt", None): the two paths must agree on which, not on the message."""
    try:
        return "ok", decode(*args)
    except CorruptFile:
        return "corrupt", None


@given(state=states, block_size=st.integers(1, 400))
def test_block_changes_equals_the_reference_decoder(state: dict[bytes, tuple[bytes, int | None]],
                                                    block_size: int) -> None:
    entries = [(k, v, e) for k, (v, e) in sorted(state.items())]
    reader = snapshot_of(entries, block_size)
    decoded: list[tuple[bytes, Change]] = []
    for i in range(len(reader.blocks)):
        raw = reader.read_block(i)
        fast = reader.block_changes(i, raw)
        assert fast == reference_changes(reader, i, raw)
        assert all(type(key) is bytes for key, _change in fast)
        decoded += fast
    assert decoded == [(k, v if e is None else (v, e)) for k, v, e in entries]


@st.composite
def damaged_blocks(draw: st.DrawFn) -> tuple[bytes, int]:
    """The encoding of some entries, then cut, extended, overwritten or miscounted."""
    entries = draw(st.lists(st.tuples(st.binary(max_size=8), st.binary(max_size=16), expiries), max_size=6))
    raw = bytearray(b"".join(snap.encode_entry(k, v, e) for k, v, e in entries))
    count = len(entries)
    for _ in range(draw(st.integers(0, 3))):
        how = draw(st.sampled_from(["cut", "extend", "overwrite", "count", "flags"]))
        if how == "cut" and raw:
            del raw[draw(st.integers(0, len(raw) - 1)):]
        elif how == "extend":
            raw += draw(st.binary(min_size=1, max_size=12))
        elif how == "overwrite" and raw:
            at = draw(st.integers(0, len(raw) - 1))
            raw[at] = draw(st.integers(0, 255))
        elif how == "flags" and raw:
            raw[0] ^= snap.FLAG_EXPIRY
        elif how == "count":
            count = draw(st.integers(0, count + 2))
    return bytes(raw), count


@given(block=damaged_blocks())
def test_block_changes_refuses_exactly_what_the_reference_refuses(block: tuple[bytes, int]) -> None:
    raw, count = block
    reader = snapshot_of([(b"k", b"v", None)], 64)
    reader.blocks[0] = dataclasses.replace(reader.blocks[0], entry_count=count)
    fast = outcome(reader.block_changes, 0, raw)
    reference = outcome(lambda: reference_changes(reader, 0, raw))
    assert fast == reference


def test_an_empty_block_decodes_to_nothing_on_both_paths() -> None:
    reader = snapshot_of([(b"k", b"v", None)], 64)
    reader.blocks[0] = dataclasses.replace(reader.blocks[0], entry_count=0)
    assert reader.block_changes(0, b"") == reference_changes(reader, 0, b"") == []


@given(state=states, block_size=st.integers(1, 400))
def test_the_writers_and_verifiers_digest_equals_the_entry_digest(state: dict[bytes, tuple[bytes, int | None]],
                                                                  block_size: int) -> None:
    entries = [(k, v, e) for k, (v, e) in sorted(state.items())]
    reader = snapshot_of(entries, block_size)
    reference = StateDigest()
    reference.total = sum(snap.entry_digest(k, v, e) for k, v, e in entries)
    reference.count = len(entries)
    assert reader.footer.state_digest == reference.digest()  # the writer's digest of the encodings
    reader.verify()  # the verifier's digest of the block bytes, against the footer
