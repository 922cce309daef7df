"""The restore's block replay: the pure-Python reference is the specification, and the compiled
module gives the same results and the same refusals, damaged input included."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest
from crc32c import crc32c
from hypothesis import given
from hypothesis import strategies as st

from segments import CorruptFile
from segments import _block_replay as compiled  # built by `pip install -e .`: a missing build fails here
from segments import block_replay as br
from segments import record as rec
from segments.fold import Change
from tests.segments.strategies import encode_all, record_runs
from tests.segments.test_record import checksummed_garbage

MAX = rec.MAX_LSN


@st.composite
def single_put_runs(draw: st.DrawFn) -> list[rec.Record]:
    """Runs of the common commit (one put, no expiry) with the odd delete, batch or expiry."""
    first, ts = draw(st.integers(0, 1 << 40)), draw(st.integers(0, 1 << 60))
    records = []
    for i in range(draw(st.integers(1, 30))):
        ts += draw(st.integers(1, 1000))
        key = draw(st.sampled_from([b"a", b"b", b"c", b"dd"]))
        shape = draw(st.sampled_from(["put"] * 6 + ["delete", "batch", "expiring"]))
        if shape == "put":
            ops: tuple[rec.Op, ...] = (rec.put(key, draw(st.binary(max_size=8))),)
        elif shape == "delete":
            ops = (rec.delete(key),)
        elif shape == "batch":
            ops = (rec.put(key, b"x"), rec.delete(b"a"))
        else:
            ops = (rec.put(key, b"e", ts + 5),)
        records.append(rec.Record(first + i, ts, ops, None))
    return records


def model_of(records: list[rec.Record], fold_from: int, fold_to: int) -> dict[bytes, Change]:
    """Each key's last change over the records in [fold_from, fold_to], in order."""
    model: dict[bytes, Change] = {}
    for r in records:
        if fold_from <= r.lsn <= fold_to:
            for op in r.ops:
                model[op.key] = None if op.kind != rec.PUT else \
                    op.value if op.expires_at_ns is None else (op.value, op.expires_at_ns)
    return model


def outcome(fn: br.ReplayBlock, buf: bytes, first_lsn: int, after_ts: int, fold_from: int, fold_to: int,
            want_ends: bool) -> tuple[object, ...]:
    """What one implementation does: its result and changes, or the refusal it raises."""
    changes: dict[bytes, Change] = {}
    try:
        result = fn(buf, changes, first_lsn, after_ts, fold_from, fold_to, want_ends)
    except CorruptFile as exc:
        return ("refused", exc.reason, exc.offset, exc.lsn, exc.hint)
    return ("folded", result, changes)


@given(records=st.one_of(record_runs(max_size=10), single_put_runs()), data=st.data(), want_ends=st.booleans())
def test_replay_folds_what_decoding_gives_and_both_implementations_agree(
        records: list[rec.Record], data: st.DataObject, want_ends: bool) -> None:
    first, last = records[0].lsn, records[-1].lsn
    fold_from = data.draw(st.integers(first, last + 1), label="fold_from")
    fold_to = data.draw(st.integers(max(fold_from - 1, 0), last + 1), label="fold_to")  # LSNs: never negative
    buf = encode_all(records)
    ends = [sum(len(encode_all([r])) for r in records[: k + 1]) for k in range(len(records))]
    want = ("folded", (len(records), records[0].ts_ns, records[-1].ts_ns, ends if want_ends else None),
            model_of(records, fold_from, fold_to))
    after = records[0].ts_ns - 1
    assert outcome(br.replay_block_reference, buf, first, after, fold_from, fold_to, want_ends) == want
    assert outcome(compiled.replay_block, buf, first, after, fold_from, fold_to, want_ends) == want


@st.composite
def damaged_blocks(draw: st.DrawFn) -> tuple[bytes, int, int]:
    """A block of valid records with bytes changed, cut or added (the CRC mostly no longer matches),
    or re-checksummed garbage; with the first LSN and time the caller expects (sometimes wrong)."""
    records = draw(st.one_of(record_runs(max_size=6), single_put_runs()))
    data = bytearray(encode_all(records))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["byte", "cut", "grow", "swap"]))
        if kind == "byte" and data:
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        elif kind == "cut" and data:
            del data[draw(st.integers(0, len(data) - 1)):]
        elif kind == "grow":
            data += draw(st.binary(min_size=1, max_size=40))
        elif kind == "swap" and len(records) > 1:
            data = bytearray(encode_all(records[1:2] + records[:1] + records[2:]))
    first = records[0].lsn + draw(st.sampled_from([0, 0, 0, 1, -1]))
    after = records[0].ts_ns - draw(st.sampled_from([1, 1, 0]))
    return bytes(data), max(first, 0), after


@given(block=st.one_of(damaged_blocks(), checksummed_garbage().map(lambda d: (d, rec.U64.unpack_from(
    d, rec.LSN_OFFSET)[0], rec.MIN_I64))), fold_to=st.sampled_from([0, MAX]), want_ends=st.booleans())
def test_damaged_blocks_are_refused_the_same_way_by_both(block: tuple[bytes, int, int], fold_to: int,
                                                         want_ends: bool) -> None:
    buf, first, after = block
    ref = outcome(br.replay_block_reference, buf, first, after, 0, fold_to, want_ends)
    assert outcome(compiled.replay_block, buf, first, after, 0, fold_to, want_ends) == ref
    if ref[0] == "folded":  # accepted: exactly the records a decoder reads there, nothing misread
        records = list(rec.decode_records(buf))
        assert ref[2] == model_of(records, 0, fold_to)
        assert [r.lsn for r in records] == list(range(first, first + len(records)))


def test_a_record_of_an_unknown_type_is_refused_not_passed_over() -> None:
    records = [rec.Record(5 + i, 1000 + i, (rec.put(b"k%d" % i, b"v"),)) for i in range(3)]
    data = bytearray(encode_all(records))
    second = len(encode_all(records[:1]))
    data[second + 8] = 9  # type 9: a future kind of record, with its CRC made right again
    struct.pack_into("<I", data, second, crc32c(bytes(data[second + 4 : second + len(encode_all(records[1:2]))])))
    for fn in (br.replay_block_reference, compiled.replay_block):
        with pytest.raises(CorruptFile, match="unknown record type 9") as caught:
            fn(bytes(data), {}, 5, 999, 0, MAX, False)
        assert caught.value.lsn == 6


changes_st = st.dictionaries(
    st.one_of(st.binary(max_size=12), st.binary(max_size=6).map(lambda b: b"user:000000" + b)),
    st.one_of(st.none(), st.binary(max_size=8),
              st.tuples(st.binary(max_size=8), st.integers(rec.MIN_I64, rec.MAX_I64))),
    max_size=60)


@given(changes=changes_st, cutoff=st.integers(rec.MIN_I64, rec.MAX_I64))
def test_live_rows_are_the_sorted_live_entries_in_both(changes: dict[bytes, Change], cutoff: int) -> None:
    ref = br.live_rows_reference(dict(changes), cutoff)
    assert compiled.live_rows(dict(changes), cutoff) == ref
    puts, expiring, expired = ref
    assert [k for k, _ in puts] == sorted(k for k, c in changes.items()
                                          if c is not None and (type(c) is bytes or c[1] > cutoff))
    assert expired == sum(1 for c in changes.values() if type(c) is tuple and c[1] <= cutoff)
    assert [k for k, _ in expiring] == [k for k, _ in puts if type(changes[k]) is tuple]


def test_live_rows_sort_many_keys_as_lmdb_does() -> None:
    """Enough keys that the radix passes and the runs of equal cached bytes both matter."""
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed {seed}")
    import random

    rng = random.Random(seed)
    keys = {b"key:%012d" % rng.randrange(10**9) for _ in range(20_000)}
    keys |= {b"p" * rng.randrange(30) + bytes([rng.randrange(3)]) * rng.randrange(12) for _ in range(2_000)}
    changes: dict[bytes, Change] = {k: b"v" for k in keys}
    assert compiled.live_rows(changes, 0) == br.live_rows_reference(changes, 0)


@given(st.binary(max_size=300))
def test_the_compiled_crc32c_is_crc32c(data: bytes) -> None:
    assert compiled.crc32c(data) == compiled.crc32c(data, False) == crc32c(data)


def test_without_the_extension_the_reference_runs_after_one_warning_and_ci_refuses() -> None:
    probe = ("import sys, warnings; sys.modules['segments._block_replay'] = None\n"
             "with warnings.catch_warnings(record=True) as caught:\n"
             "    warnings.simplefilter('always')\n"
             "    from segments import block_replay as br\n"
             "print(br.COMPILED, br.replay_block is br.replay_block_reference, len(caught))\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "1"]
    ci = subprocess.run([sys.executable, "-c", probe], env={**env, "CI": "true"}, capture_output=True, text=True)
    assert ci.returncode != 0
    assert "segments._block_replay is not built" in ci.stderr
    assert br.COMPILED or os.environ.get("CI") != "true"
