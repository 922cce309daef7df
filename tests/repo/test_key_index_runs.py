"""A segment's key table holds one entry per (key, LSN), the last operation of a commit on a key
winning, sorted by (digest, time, LSN), whatever chunk boundaries fall where."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import pitr.catalog.keytable as keytable
from pitr.catalog.catalog import Catalog, KeyRow
from pitr.catalog.entries import KEY_FLAG_EXPIRY, SegmentEntry
from pitr.catalog.keyindex import key_index_row
from pitr.catalog.keytable import key_digest
from pitr.errors import CatalogDamaged


def expected_index(rows: list[KeyRow]) -> list[tuple[bytes, int, int, int]]:
    """One entry per (key, LSN), the last operation given winning, in index order."""
    last: dict[tuple[bytes, int], tuple[bytes, int, int, int]] = {}
    for key, ts, lsn, kind, expiry in rows:
        last[(key, lsn)] = (key_index_row(key_digest(key), ts, lsn), lsn, kind, KEY_FLAG_EXPIRY if expiry else 0)
    return sorted(last.values())


def test_tables_store_one_entry_per_key_and_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   random_seed: int) -> None:
    rng = random.Random(random_seed)
    monkeypatch.setattr(keytable, "CHUNK_ENTRIES", 7)
    monkeypatch.setattr(keytable, "SORT_RUN", 5)  # sorted in runs of 5, then merged
    # A batch deleting then putting one key: the put, given last, must win.
    rows: list[KeyRow] = [(b"a%d" % n, 900 + n, n + 1, 1, False) for n in range(4)]
    rows += [(b"dup-in", 905, 5, 2, False), (b"dup-in", 905, 5, 1, True)]
    rows += [(b"dup-edge", 906, 6, 2, False), (b"dup-edge", 906, 6, 1, False)]
    lsn = 6
    for _ in range(60):  # commits in LSN order; a batch may touch one key several times
        lsn += 1
        ts = 1_000 + lsn - rng.randrange(2)  # two commits may share a time: both are kept
        for _op in range(rng.choice([1, 1, 1, 3])):
            rows.append((b"k%02d" % rng.randrange(12), ts, lsn, rng.choice([1, 2]), rng.random() < 0.2))
    entry = SegmentEntry("00000000000000000001-00000000000000000066.seg", 1, lsn, 900, 1_000 + lsn,
                         1_000 + lsn, 1, lsn, 1, 1, b"\0" * 32, b"\1" * 32)
    catalog = Catalog(str(tmp_path / "catalog"))
    try:
        catalog.add_segment(entry, [], rows)
        stored = list(catalog.key_index())
        versions = [(v.ts_ns, v.lsn) for v in catalog.key_versions(b"dup-in")]
    finally:
        catalog.close()
    assert len(stored) > 3 * 7, "the entries span several chunks"
    assert stored == expected_index(rows)
    assert versions == [(905, 5)]


def test_a_merge_missing_a_runs_table_is_refused(tmp_path: Path) -> None:
    """Merging segments merges their tables; a run without its table would lose its versions: refused."""
    first = SegmentEntry("00000000000000000001-00000000000000000002.seg", 1, 2, 10, 20, 20, 1, 2, 1, 1,
                         b"\0" * 32, b"\1" * 32)
    second = SegmentEntry("00000000000000000003-00000000000000000004.seg", 3, 4, 30, 40, 40, 1, 2, 1, 1,
                          b"\1" * 32, b"\2" * 32)
    merged = SegmentEntry("00000000000000000001-00000000000000000004.seg", 1, 4, 10, 40, 40, 2, 4, 2, 2,
                          b"\0" * 32, b"\2" * 32)
    catalog = Catalog(str(tmp_path / "catalog"))
    try:
        catalog.add_segment(first, [], [(b"a", 10, 1, 1, False), (b"b", 20, 2, 1, False)])
        catalog.add_segment(second, [], [(b"a", 30, 3, 1, False), (b"c", 40, 4, 2, False)])
        assert catalog.env is not None
        with catalog.env.begin(write=True) as txn:  # the second run's table row is lost
            txn.delete((3).to_bytes(8, "big"), db=catalog._dbs[b"keytables"])
        with pytest.raises(CatalogDamaged, match="do not cover"):
            catalog.add_segment_indexed(merged, [], None, [1, 3])
        catalog.add_segment(second, [], [(b"a", 30, 3, 1, False), (b"c", 40, 4, 2, False)], [3])
        catalog.add_segment_indexed(merged, [], None, [1, 3])
        assert [(v.ts_ns, v.lsn) for v in catalog.key_versions(b"a")] == [(10, 1), (30, 3)]
    finally:
        catalog.close()
