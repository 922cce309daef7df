"""verify's byte-for-byte comparison of key tables: it may only vouch for a catalog whose tables are
exactly those the files imply (tables of unchecked segments aside); anything else goes key by key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

from pitr.catalog.catalog import Catalog
from pitr.catalog.keyindex import KeyTable
from pitr.verify.catalog_check import ExpectedRows, _tables_match

A, B = b"a" * 50, b"b" * 25


class FakeCatalog:
    def __init__(self, tables: list[tuple[int, int, bytes]]) -> None:
        self.tables = tables

    def key_table_payloads(self) -> Iterator[tuple[KeyTable, bytes]]:
        for first, last, payload in self.tables:
            yield KeyTable(first, last, 0, 0, len(payload) // 25), payload


def matches(catalog: list[tuple[int, int, bytes]], implied: dict[int, tuple[int, bytes]],
            unchecked: list[tuple[int, int]] | None = None) -> bool:
    expected = ExpectedRows(tables=implied, unchecked=unchecked or [])
    return _tables_match(cast(Catalog, FakeCatalog(catalog)), expected)


def test_equal_tables_match() -> None:
    assert matches([(1, 10, A), (11, 20, B)], {1: (10, A), 11: (20, B)})


def test_a_table_no_checked_segment_implies_does_not_match() -> None:
    assert not matches([(1, 10, A), (11, 20, B)], {1: (10, A)})
    assert matches([(1, 10, A), (11, 20, B)], {1: (10, A)}, unchecked=[(11, 20)])
    assert not matches([(1, 10, A), (11, 30, B)], {1: (10, A)}, unchecked=[(11, 20)])  # only partly unchecked


def test_a_missing_or_different_table_does_not_match() -> None:
    assert not matches([(1, 10, A)], {1: (10, A), 11: (20, B)})
    assert not matches([(1, 10, A), (11, 20, A[:25])], {1: (10, A), 11: (20, B)})
    assert not matches([(1, 12, A)], {1: (10, A)})  # another LSN range
