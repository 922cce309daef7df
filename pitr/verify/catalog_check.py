"""Checking the catalog against the files: every row the files imply exists, and no other.

The catalog is derived data that restores and audit answers trust, so `verify`
recomputes its rows from the healthy files (segment, block, time, snapshot
rows; in full mode the key index and the source-gap rows too) and reports
any difference with the reindex hint. Rows of files that are damaged or were
not checked are not compared.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field

from pitr.catalog.catalog import Catalog
from pitr.catalog.entries import KEY_FLAG_EXPIRY, KEY_VALUE, BlockRow, SegmentEntry, SnapshotEntry
from pitr.catalog.keyindex import key_index_row
from pitr.catalog.keytable import ENTRY_SIZE, decode_entry, digest_function
from pitr.catalog.rows import U64_MAX
from pitr.errors import REINDEX_HINT, CatalogDamaged
from pitr.verify.checks import Finding

EXAMPLES = 3


@dataclass(slots=True)
class ExpectedRows:
    """The rows the healthy files imply."""

    segments: dict[str, SegmentEntry] = field(default_factory=dict)
    blocks: dict[int, BlockRow] = field(default_factory=dict)
    snapshots: dict[str, SnapshotEntry] = field(default_factory=dict)
    keys: dict[bytes, bytes] | None = None  # row key -> value payload; None when not computed (quick)
    index_key: bytes | None = None  # an encrypted repository's: the catalog's digests are keyed
    tables: dict[int, tuple[int, bytes]] | None = None  # segment first LSN -> (last LSN, its key table's entries)
    gap_lsns: set[int] | None = None
    unchecked: list[tuple[int, int]] = field(default_factory=list)  # LSN ranges whose rows are not compared
    unchecked_names: set[str] = field(default_factory=set)

    def add_key_rows(self, rows: list[tuple[bytes, int, int, int, bool]]) -> None:
        keys = self.keys if self.keys is not None else {}
        digest_of = digest_function(self.index_key)
        for k, ts, lsn, kind, exp in rows:
            keys[key_index_row(digest_of(k), ts, lsn)] = KEY_VALUE.pack(lsn, kind, KEY_FLAG_EXPIRY if exp else 0)
        self.keys = keys

    def add_key_table(self, first_lsn: int, last_lsn: int, entries: bytes) -> None:
        """A segment's key table as the files imply it: its sorted entries, joined (`pitr.catalog.keytable`)."""
        tables = self.tables if self.tables is not None else {}
        tables[first_lsn] = (last_lsn, entries)
        self.tables = tables

    def key_rows(self) -> dict[bytes, bytes]:
        """Every expected key-index row, as `add_key_rows` names them (the tables' entries included)."""
        keys = dict(self.keys) if self.keys is not None else {}
        for _last, entries in (self.tables or {}).values():
            for at in range(0, len(entries), ENTRY_SIZE):
                digest, ts, lsn, kind, has_expiry = decode_entry(entries[at : at + ENTRY_SIZE])
                keys[key_index_row(digest, ts, lsn)] = KEY_VALUE.pack(lsn, kind, KEY_FLAG_EXPIRY if has_expiry else 0)
        return keys

    def covers_unchecked(self, first_lsn: int, last_lsn: int) -> bool:
        """Whether every LSN of first_lsn..last_lsn is in one unchecked range."""
        ranges = self.unchecked
        i = bisect.bisect_right(ranges, (first_lsn, U64_MAX)) - 1
        return i >= 0 and ranges[i][0] <= first_lsn and last_lsn <= ranges[i][1]

    def is_unchecked(self, lsn: int) -> bool:
        ranges = self.unchecked  # sorted and merged by check_catalog
        i = bisect.bisect_right(ranges, (lsn, U64_MAX)) - 1
        return i >= 0 and ranges[i][0] <= lsn <= ranges[i][1]


def _finding(catalog: Catalog, message: str) -> Finding:
    return Finding(catalog.path, f"{message} (hint: {REINDEX_HINT})", kind="catalog")


def _examples(items: list[str]) -> str:
    shown = ", ".join(items[:EXAMPLES])
    return shown + (f" and {len(items) - EXAMPLES} more" if len(items) > EXAMPLES else "")


def check_catalog(catalog: Catalog, expected: ExpectedRows) -> list[Finding]:
    """Findings (kind "catalog") for every way the catalog disagrees with the files."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(expected.unchecked):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    expected.unchecked = merged
    try:
        return list(_compare(catalog, expected))
    except CatalogDamaged as exc:
        return [_finding(catalog, exc.message)]


def _tables_match(catalog: Catalog, expected: ExpectedRows) -> bool:
    """Whether the catalog's key tables are exactly those the files imply (plus tables of unchecked
    segments): the common case, decided without a row per key. False sends the comparison key by key,
    which names what differs."""
    tables = expected.tables or {}
    matched = 0
    for table, payload in catalog.key_table_payloads():
        want = tables.get(table.first_lsn)
        if want is not None and want[0] == table.last_lsn:
            if payload != want[1]:
                return False
            matched += 1
        elif not expected.covers_unchecked(table.first_lsn, table.last_lsn):
            return False
    return matched == len(tables)


def _compare(catalog: Catalog, expected: ExpectedRows) -> Iterator[Finding]:
    rows = {s.name: s for s in catalog.segments()}
    missing = sorted(n for n in expected.segments if n not in rows)
    differ = sorted(n for n, e in expected.segments.items() if n in rows and rows[n] != e)
    extra = sorted(n for n in rows if n not in expected.segments and n not in expected.unchecked_names)
    if missing:
        yield _finding(catalog, f"no segment row for {_examples(missing)}")
    if differ:
        yield _finding(catalog, f"segment rows differ from the files {_examples(differ)}")
    if extra:
        yield _finding(catalog, f"segment rows for files the repository does not hold: {_examples(extra)}")

    segment_starts = {s.first_lsn for s in rows.values()}
    checked_starts = {e.first_lsn for e in expected.segments.values()}
    blocks = {b.first_lsn: b for b in catalog.blocks()}
    bad_blocks = [f"LSN {lsn}" for lsn, b in sorted(blocks.items())
                  if (b.segment_first_lsn in checked_starts and expected.blocks.get(lsn) != b)
                  or b.segment_first_lsn not in segment_starts]
    bad_blocks += [f"LSN {lsn} (missing)" for lsn in sorted(expected.blocks) if lsn not in blocks]
    if bad_blocks:
        yield _finding(catalog, f"block rows disagree with the segments' block indexes: {_examples(bad_blocks)}")
    times = set(catalog.times())
    implied = {(b.first_ts_ns, b.first_lsn) for b in blocks.values()}
    if times != implied:
        odd = sorted(f"time {ts} -> LSN {lsn}" for ts, lsn in times ^ implied)
        yield _finding(catalog, f"time rows disagree with the block rows: {_examples(odd)}")

    snaps = {s.name: s for s in catalog.snapshots()}
    bad_snaps = sorted(n for n, e in expected.snapshots.items() if snaps.get(n) != e)
    bad_snaps += sorted(n for n in snaps if n not in expected.snapshots and n not in expected.unchecked_names)
    if bad_snaps:
        yield _finding(catalog, f"snapshot rows disagree with the files: {_examples(bad_snaps)}")

    if (expected.keys is not None or expected.tables is not None) and \
            (expected.keys is not None or not _tables_match(catalog, expected)):
        # (when every table the files imply is in the catalog byte for byte, and no other, no row is compared)
        want = expected.key_rows()
        wrong: list[str] = []
        unexpected: list[str] = []
        for row_key, lsn, kind, flags in catalog.key_index():
            value = want.pop(row_key, None)
            if value is None:
                if not expected.is_unchecked(lsn):
                    unexpected.append(f"LSN {lsn}")
            elif value != KEY_VALUE.pack(lsn, kind, flags):
                wrong.append(f"LSN {lsn}")
        absent = sorted(f"LSN {KEY_VALUE.unpack(v)[0]}" for v in want.values())
        if absent:
            yield _finding(catalog, f"key index lacks {len(absent)} row(s) the segments imply: {_examples(absent)}")
        if wrong:
            yield _finding(catalog, f"key index has {len(wrong)} row(s) that differ from the segments: "
                                    f"{_examples(wrong)}")
        if unexpected:
            yield _finding(catalog, f"key index has {len(unexpected)} row(s) no segment implies: "
                                    f"{_examples(unexpected)}")
    if expected.gap_lsns is not None:
        have = {lsn for lsn, _ts in catalog.gaps() if not expected.is_unchecked(lsn)}
        if have != expected.gap_lsns:
            odd = sorted(f"LSN {lsn}" for lsn in have ^ expected.gap_lsns)
            yield _finding(catalog, f"source-gap rows disagree with the segments: {_examples(odd)}")
