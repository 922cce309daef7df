"""Property: the key index answers exactly what a brute-force scan of the commits answers.

Random histories of key versions (several keys per commit, equal commit
times, deletes and expiries) are indexed segment by segment, some runs of
segments are merged as the archiver merges them, and chunks are kept tiny so
that a key's versions cross chunk boundaries. The digest is made weak (three
values), so most keys collide: the index may name another key's commits (a
reader compares the real key), but it must never miss one of the key's own.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

import pitr.catalog.keytable as keytable
from pitr.catalog.catalog import Catalog, KeyRow
from pitr.catalog.entries import KeyVersion, SegmentEntry

KEYS = [b"a", b"b", b"c", b"ab", b"ba", b"long/" + b"x" * 600]


def weak_digest(key: bytes) -> bytes:
    return bytes(7) + bytes([sum(key) % 3])


@contextmanager
def weak_index() -> Iterator[None]:
    with mock.patch.object(keytable, "key_digest", weak_digest), mock.patch.object(keytable, "CHUNK_ENTRIES", 3):
        yield


commits = st.lists(st.tuples(st.integers(0, 2),  # time step (0: the same time as the commit before)
                             st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from([1, 2]), st.booleans()),
                                      min_size=1, max_size=3)),
                   min_size=1, max_size=40)


def segment(first: int, last: int, rows: list[KeyRow]) -> SegmentEntry:
    ts = [r[1] for r in rows] or [0]
    return SegmentEntry(f"{first:020d}-{last:020d}.seg", first, last, min(ts), max(ts), max(ts), 1,
                        last - first + 1, 1, 1, b"\0" * 32, b"\1" * 32)


def true_versions(rows: list[KeyRow], key: bytes) -> list[tuple[int, int]]:
    """(ts, LSN) of every commit that touched `key`, oldest first."""
    return sorted({(ts, lsn) for k, ts, lsn, _kind, _exp in rows if k == key})


def own(versions: list[KeyVersion], rows: list[KeyRow], key: bytes) -> list[tuple[int, int]]:
    """The versions that are really `key`'s (what a reader keeps after reading each record)."""
    touched = {lsn for k, _ts, lsn, _kind, _exp in rows if k == key}
    return [(v.ts_ns, v.lsn) for v in versions if v.lsn in touched]


@given(history=commits, cuts=st.lists(st.integers(1, 40), max_size=6), merges=st.lists(st.integers(0, 8), max_size=3),
       data=st.data())
def test_key_index_agrees_with_a_scan(history: list[tuple[int, list[tuple[bytes, int, bool]]]], cuts: list[int],
                                      merges: list[int], data: st.DataObject) -> None:
    rows: list[KeyRow] = []
    ts = 1_000
    for lsn, (step, ops) in enumerate(history, start=1):
        ts += step
        rows += [(key, ts, lsn, kind, exp) for key, kind, exp in ops]
    last_lsn = len(history)
    bounds = sorted({c for c in cuts if c < last_lsn} | {last_lsn})
    spans, first = [], 1
    for end in bounds:
        spans.append((first, end))
        first = end + 1
    with weak_index(), tempfile.TemporaryDirectory() as root:
        catalog = Catalog(f"{root}/catalog")
        try:
            for first, last in spans:
                catalog.add_segment(segment(first, last, [r for r in rows if first <= r[2] <= last]), [],
                                    [r for r in rows if first <= r[2] <= last])
            for start in merges:  # merge two neighbouring segments, as the archiver's merge does
                segs = catalog.segments()
                if start + 1 < len(segs):
                    a, b = segs[start], segs[start + 1]
                    inside = [r for r in rows if a.first_lsn <= r[2] <= b.last_lsn]
                    catalog.add_segment_indexed(segment(a.first_lsn, b.last_lsn, inside), [], None,
                                                [a.first_lsn, b.first_lsn])
            for key in KEYS:
                truth = true_versions(rows, key)
                assert own(list(catalog.key_versions(key)), rows, key) == truth
                since = data.draw(st.integers(990, ts + 2), label="since")
                until = data.draw(st.integers(since, ts + 3), label="until")
                window = own(list(catalog.key_versions(key, since, until)), rows, key)
                assert window == [v for v in truth if since <= v[0] <= until]
                moment = data.draw(st.integers(990, ts + 2), label="moment")
                for inclusive in (True, False):
                    want = [v for v in truth if (v[0] <= moment if inclusive else v[0] < moment)]
                    assert newest_own(catalog, rows, key, moment, inclusive) == (want[-1] if want else None)
        finally:
            catalog.close()


def newest_own(catalog: Catalog, rows: list[KeyRow], key: bytes, moment: int,
               inclusive: bool) -> tuple[int, int] | None:
    """`key_version_at`, stepping past other keys' versions as `pitr.audit.at` does."""
    touched = {lsn for k, _ts, lsn, _kind, _exp in rows if k == key}
    skip = 0
    while True:
        version = catalog.key_version_at(key, moment, inclusive=inclusive, skip=skip)
        if version is None:
            return None
        if version.lsn in touched:
            return version.ts_ns, version.lsn
        skip += 1
