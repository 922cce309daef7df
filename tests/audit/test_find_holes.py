"""find_holes on hand-made catalogs: where holes start and end, their times, and their reasons."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from pitr.audit import Hole, find_holes
from pitr.catalog.entries import FileCheck, SegmentEntry, SnapshotEntry
from pitr.errors import Gap
from pitr.repo.identity import RepoIdentity

IDENT = RepoIdentity(uuid.UUID(int=1), "t", 0, 1, b"\0" * 32)


def segment(first: int, last: int, *, complete: int | None = None) -> SegmentEntry:
    return SegmentEntry(f"{first:020d}-{last:020d}.seg", first, last, first * 10, last * 10,
                        last * 10 if complete is None else complete, 1, last - first + 1, 1, 1,
                        b"\0" * 32, b"\0" * 32)


@dataclass
class FakeCatalog:
    segs: list[SegmentEntry]
    snaps: list[SnapshotEntry] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    checks: list[FileCheck] = field(default_factory=list)

    def segments(self) -> list[SegmentEntry]:
        return self.segs

    def first_segment(self) -> SegmentEntry | None:
        return self.segs[0] if self.segs else None

    def snapshots(self) -> list[SnapshotEntry]:
        return self.snaps

    def watermark(self) -> tuple[int, int] | None:
        mark = self.meta.get("watermark")
        return None if mark is None else (mark[0], mark[1])

    def file_checks(self) -> list[FileCheck]:
        return self.checks


def holes(catalog: FakeCatalog, damaged: list[tuple[int, int, str]] | None = None) -> list[Hole]:
    return find_holes(catalog, IDENT, damaged or [])  # type: ignore[arg-type]


def test_missing_middle_and_start_and_the_times_around_them() -> None:
    found = holes(FakeCatalog([segment(5, 9, complete=95), segment(20, 30)]))
    assert found == [Hole(Gap(1, 4), None, 50), Hole(Gap(10, 19), 95, 200)]
    assert found[1].meets_times(None, 96)
    assert not found[1].meets_times(None, 95)
    assert found[1].meets_times(199, None)
    assert not found[1].meets_times(200, None)
    assert found[1].meets_lsns(19, None)
    assert not found[1].meets_lsns(20, None)


def test_the_watermark_promises_lsns_no_segment_holds() -> None:
    catalog = FakeCatalog([segment(1, 9)], meta={"watermark": [15, 400]})
    assert holes(catalog) == [Hole(Gap(10, 15), 90, 401)]
    assert holes(FakeCatalog([segment(1, 9)], meta={"watermark": [9, 400]})) == []


def test_damaged_files_give_their_part_of_a_hole_its_reason() -> None:
    catalog = FakeCatalog([segment(1, 9), segment(40, 50)])
    found = holes(catalog, [(15, 19, "damaged a"), (25, 39, "damaged b")])
    assert [h.gap for h in found] == [Gap(10, 14), Gap(15, 19, "damaged a"), Gap(20, 24),
                                      Gap(25, 39, "damaged b")]


def test_retention_floor_is_not_a_hole_but_a_lost_first_segment_is() -> None:
    snap = SnapshotEntry(name="s", lsn=24, ts_ns=240, size=1, entry_count=0, logical_bytes=0, created_ns=250,
                         chain_digest=b"\0" * 32, state_digest=b"\0" * 32)
    assert holes(FakeCatalog([segment(20, 30), segment(31, 40)], [snap])) == []
    assert [h.gap for h in holes(FakeCatalog([segment(31, 40)], [snap]))] == [Gap(1, 30)]


def test_a_segment_verify_found_damaged_is_a_hole_naming_it_and_an_ok_one_is_not() -> None:
    middle = segment(10, 19)
    checks = [FileCheck(middle.name, "segment", 10, 19, "damaged", "block CRC-32C mismatch", 1, "full"),
              FileCheck(segment(1, 9).name, "segment", 1, 9, "ok", "", 1, "full")]
    found = holes(FakeCatalog([segment(1, 9), middle, segment(20, 30)], checks=checks))
    assert [h.gap for h in found] == [Gap(10, 19, f"segment {middle.name} is damaged: block CRC-32C mismatch")]
