"""The catalog sorts a segment's key-index rows in bounded runs (a sort holds the GIL for its whole
length); the rows it stores are the ones a single sort of all of them would give."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import pitr.catalog.catalog as catalog_module
from pitr.catalog.catalog import Catalog, KeyRow
from pitr.catalog.entries import KEY_FLAG_EXPIRY, U64BE, SegmentEntry, key_prefix


def expected_index(rows: list[KeyRow]) -> list[tuple[bytes, int, int, int]]:
    """One row per (key, time), the last operation given winning, in index order."""
    last: dict[bytes, tuple[int, int, int]] = {}
    for key, ts, lsn, kind, expiry in rows:
        last[key_prefix(key) + U64BE.pack(ts)] = (lsn, kind, KEY_FLAG_EXPIRY if expiry else 0)
    return [(k, *v) for k, v in sorted(last.items())]


def test_runs_store_the_rows_one_sort_would(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    monkeypatch.setattr(catalog_module, "SORT_RUN", 7)
    # A batch deleting then putting one key, once inside a run and once across the edge of two
    # runs (rows 6 and 7): the put, given last, must win.
    rows: list[KeyRow] = [(b"a%d" % n, 900 + n, n + 1, 1, False) for n in range(4)]
    rows += [(b"dup-in", 905, 5, 2, False), (b"dup-in", 905, 5, 1, True)]
    rows += [(b"dup-edge", 906, 6, 2, False), (b"dup-edge", 906, 6, 1, False)]
    lsn = 6
    for _ in range(60):  # commits in LSN order; a batch may touch one key several times
        lsn += 1
        ts = 1_000 + lsn
        for _op in range(rng.choice([1, 1, 1, 3])):
            rows.append((b"k%02d" % rng.randrange(12), ts, lsn, rng.choice([1, 2]), rng.random() < 0.2))
    entry = SegmentEntry("00000000000000000001-00000000000000000066.seg", 1, lsn, 900, 1_000 + lsn,
                         1_000 + lsn, 1, lsn, 1, 1, b"\0" * 32, b"\1" * 32)
    catalog = Catalog(str(tmp_path / "catalog"))
    try:
        catalog.add_segment(entry, [], rows)
        stored = list(catalog.key_index())
    finally:
        catalog.close()
    assert len(rows) > 3 * 7, "the rows span several runs"
    assert stored == expected_index(rows)
