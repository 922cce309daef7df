"""Chain digests across segments: every break is found and named; merging keeps the chain."""

from __future__ import annotations

import io
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segments import (
    BytesSource,
    ChainError,
    CorruptFile,
    SegmentMeta,
    SegmentReader,
    chain,
    check_chain,
    merge_segments,
    read_meta,
    seal_segment,
)
from segments import record as rec
from segments.segment_writer import SealedSegment
from tests.segments.strategies import STORE_ID, encode_all, plain_records, seal, seal_chain

GENESIS = chain.genesis(STORE_ID)


def metas_of(segments: list[tuple[bytes, SealedSegment]]) -> list[SegmentMeta]:
    return [read_meta(BytesSource(data, f"seg{i}")) for i, (data, _) in enumerate(segments)]


@st.composite
def chains(draw: st.DrawFn, min_segments: int = 2, max_segments: int = 6) -> list[tuple[bytes, SealedSegment]]:
    count = draw(st.integers(min_segments, max_segments))
    total = draw(st.integers(count, count * 4))
    cuts = draw(st.lists(st.integers(1, total - 1), min_size=count - 1, max_size=count - 1, unique=True))
    records = plain_records(draw(st.integers(1, 1000)), total, value_size=draw(st.integers(1, 60)))
    return seal_chain(records, cuts, block_size=128)


@settings(deadline=None)
@given(chains())
def test_an_intact_chain_has_no_problems(segments: list[tuple[bytes, SealedSegment]]) -> None:
    metas = metas_of(segments)
    assert check_chain(metas, GENESIS) == []
    assert metas[-1].chain_digest == chain.fold(GENESIS, [p for m in metas for p in m.pieces])


@settings(deadline=None)
@given(segments=chains(), data=st.data())
def test_every_removal_is_caught(segments: list[tuple[bytes, SealedSegment]], data: st.DataObject) -> None:
    metas = metas_of(segments)
    gone = data.draw(st.integers(0, len(metas) - 2), label="removed")  # removing the newest is a shorter chain
    problems = check_chain(metas[:gone] + metas[gone + 1 :], GENESIS)
    assert problems
    assert problems[0].kind == ("start" if gone == 0 else "gap")
    assert problems[0].path == metas[gone + 1].name


@settings(deadline=None)
@given(segments=chains(), data=st.data())
def test_every_duplication_is_caught(segments: list[tuple[bytes, SealedSegment]], data: st.DataObject) -> None:
    metas = metas_of(segments)
    copied = data.draw(st.integers(0, len(metas) - 1), label="copied")
    at = data.draw(st.integers(0, len(metas)), label="inserted at")
    sequence = metas[:at] + [metas[copied]] + metas[at:]
    assert check_chain(sequence, GENESIS)
    if at in (copied, copied + 1):
        assert [p.kind for p in check_chain(sequence)] == ["duplicate"]


@settings(deadline=None)
@given(segments=chains(min_segments=2), data=st.data())
def test_every_reordering_is_caught(segments: list[tuple[bytes, SealedSegment]], data: st.DataObject) -> None:
    metas = metas_of(segments)
    order = data.draw(st.permutations(range(len(metas))), label="order")
    shuffled = [metas[i] for i in order]
    problems = check_chain(shuffled)
    if list(order) == sorted(order):
        assert problems == []
    else:
        assert any(p.kind == "order" for p in problems)


@settings(deadline=None)
@given(segments=chains(), data=st.data(), wrong=st.binary(min_size=32, max_size=32))
def test_a_segment_sealed_with_a_wrong_prev_digest_is_caught(
    segments: list[tuple[bytes, SealedSegment]], data: st.DataObject, wrong: bytes
) -> None:
    metas = metas_of(segments)
    k = data.draw(st.integers(0, len(metas) - 1), label="resealed")
    prev = GENESIS if k == 0 else metas[k - 1].chain_digest
    if wrong == prev:
        wrong = bytes(b ^ 1 for b in wrong)
    reader = SegmentReader(BytesSource(segments[k][0]))
    resealed, _ = seal(list(reader.iter_records()), wrong, block_size=128)
    sequence = metas[:k] + [read_meta(BytesSource(resealed, "forged"))] + metas[k + 1 :]
    problems = check_chain(sequence, GENESIS)
    assert problems[0].kind == ("start" if k == 0 else "link")
    assert problems[0].path == "forged"
    assert problems[0].previous == (None if k == 0 else metas[k - 1].name)
    assert "forged" in problems[0].message


def test_an_altered_segment_breaks_the_next_link() -> None:
    records = plain_records(1, 12)
    segments = seal_chain(records, [4, 8])
    metas = metas_of(segments)
    altered = [r._replace(ops=(rec.put(b"evil", b"value"),)) if r.lsn == 6 else r for r in records[4:8]]
    forged, _ = seal(altered, metas[0].chain_digest)
    problems = check_chain([metas[0], read_meta(BytesSource(forged, "forged")), metas[2]], GENESIS)
    assert [(p.kind, p.path, p.previous) for p in problems] == [("link", "seg2", "forged")]


def test_foreign_store_and_overlap_are_named() -> None:
    records = plain_records(1, 10)
    metas = metas_of(seal_chain(records, [5]))
    overlap = read_meta(BytesSource(seal(records[3:7], metas[0].chain_digest)[0], "overlap"))
    assert [p.kind for p in check_chain([metas[0], overlap])] == ["overlap"]
    buf = encode_all(records[5:])
    out = io.BytesIO()
    seal_segment(out, uuid.uuid4(), metas[0].chain_digest, buf, list(rec.scan_spans(buf)), 0)
    foreign = read_meta(BytesSource(out.getvalue(), "foreign"))
    assert [(p.kind, p.path, p.previous) for p in check_chain([metas[0], foreign])] == [
        ("store", "foreign", "seg0")]


@settings(deadline=None)
@given(segments=chains(min_segments=3), data=st.data())
def test_merged_segments_verify_and_keep_the_chain(
    segments: list[tuple[bytes, SealedSegment]], data: st.DataObject
) -> None:
    metas = metas_of(segments)
    i = data.draw(st.integers(0, len(metas) - 2), label="first merged")
    j = data.draw(st.integers(i + 1, len(metas) - 1), label="last merged")
    readers = [SegmentReader(BytesSource(segments[k][0], f"seg{k}")) for k in range(i, j + 1)]
    out = io.BytesIO()
    sealed = merge_segments(readers, out, block_size=data.draw(st.integers(64, 2048), label="block size"))
    merged_reader = SegmentReader(BytesSource(out.getvalue(), "merged"))
    merged_reader.verify()
    merged = merged_reader.meta
    assert merged.header.prev_chain_digest == metas[i].header.prev_chain_digest
    assert merged.chain_digest == sealed.chain_digest == metas[j].chain_digest
    assert merged.pieces == [p for m in metas[i : j + 1] for p in m.pieces]
    assert check_chain(metas[:i] + [merged] + metas[j + 1 :], GENESIS) == []
    expected = [r for k in range(i, j + 1) for r in SegmentReader(BytesSource(segments[k][0])).iter_records()]
    assert list(merged_reader.iter_records()) == expected
    # merging a merged segment again keeps the chain too
    again = io.BytesIO()
    merge_segments([merged_reader], again)
    assert read_meta(BytesSource(again.getvalue())).chain_digest == metas[j].chain_digest


def test_merge_refuses_segments_that_do_not_link() -> None:
    segments = seal_chain(plain_records(1, 9), [3, 6])
    readers = [SegmentReader(BytesSource(data, f"seg{i}")) for i, (data, _) in enumerate(segments)]
    with pytest.raises(ChainError) as info:
        merge_segments([readers[0], readers[2]], io.BytesIO())
    assert (info.value.path, info.value.previous) == ("seg2", "seg0")
    with pytest.raises(ValueError, match="nothing"):
        merge_segments([], io.BytesIO())


def test_merge_checks_the_records_against_their_pieces() -> None:
    segments = seal_chain(plain_records(1, 6), [3])
    reader = SegmentReader(BytesSource(segments[0][0], "seg0"))
    meta = reader.meta
    forged_pieces = [chain.Piece(p.first_lsn, p.last_lsn, bytes(32)) for p in meta.pieces]
    reader.meta = SegmentMeta(meta.name, meta.size, meta.header, meta.trailer, meta.index, forged_pieces)
    with pytest.raises(CorruptFile, match="digest"):
        merge_segments([reader], io.BytesIO())
