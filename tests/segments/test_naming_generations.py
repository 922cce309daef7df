"""Repair generations in segment and snapshot names (docs/format.md, "Repair generations"), and the rule that
picks the live file among generations and merges (`pitr.repo.live`).

The specification:

- the names of format.md's test vector parse and print as the code does; names without a mark are
  generation 0 (old names still parse); a non-canonical or malformed mark is no pitr name;
- of the files of one range (one snapshot), the highest generation is live whatever the listing order,
  and the others are superseded; a wider live segment still supersedes what it covers;
- the rule never falls back to a lower generation.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pitr.repo.live import live_segments, live_snapshots
from segments.naming import (
    base_name,
    generation_of,
    parse_segment_file,
    parse_segment_name,
    parse_snapshot_file,
    parse_snapshot_name,
    segment_name,
    snapshot_name,
    with_generation,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "format.md"
SEGMENT = "00000000000000000001-00000000000000000284.seg"
SEGMENT_R1 = "00000000000000000001-00000000000000000284.r000001.seg"
SNAPSHOT_R2 = "00000000000000000042-20261129T140947250000000Z.r000002.snap"
TS = 1_795_961_387_250_000_000  # 2026-11-29T14:09:47.25Z


def test_the_format_vector() -> None:
    section = DOC.read_text().split("### Repair generations", 1)[1].split("\n## ", 1)[0]
    for name in (SEGMENT, SEGMENT_R1, SNAPSHOT_R2):
        assert f"`{name}`" in section, name
    assert segment_name(1, 284) == SEGMENT
    assert segment_name(1, 284, 1) == with_generation(SEGMENT, 1) == SEGMENT_R1
    assert parse_segment_file(SEGMENT_R1) == (1, 284, 1)
    assert parse_segment_name(SEGMENT_R1) == (1, 284)
    assert snapshot_name(42, TS, 2) == SNAPSHOT_R2
    assert parse_snapshot_file(SNAPSHOT_R2) == (42, snapshot_name(42, TS), 2)
    assert parse_snapshot_name(SNAPSHOT_R2) == 42
    assert base_name(SNAPSHOT_R2) == snapshot_name(42, TS)
    assert generation_of(SEGMENT) == 0
    assert generation_of(SNAPSHOT_R2) == 2
    listing = [segment_name(1, 10), segment_name(1, 10, 2), segment_name(1, 10, 1), segment_name(11, 20)]
    keep, superseded = live_segments(listing)
    assert sorted(keep) == [segment_name(1, 10, 2), segment_name(11, 20)]
    assert superseded == sorted([segment_name(1, 10), segment_name(1, 10, 1)])
    assert f"`{listing[0]}`" in section
    assert f"`{listing[1]}`" in section


def test_old_names_parse_as_generation_zero() -> None:
    assert parse_segment_file(SEGMENT) == (1, 284, 0)
    assert parse_snapshot_file(snapshot_name(42, TS)) == (42, snapshot_name(42, TS), 0)
    assert with_generation(SEGMENT_R1, 0) == SEGMENT


@pytest.mark.parametrize("name", [
    "00000000000000000001-00000000000000000284.r000000.seg",  # generation 0 is written without the mark
    "00000000000000000001-00000000000000000284.r1.seg",
    "00000000000000000001-00000000000000000284.r0000001.seg",
    "00000000000000000001-00000000000000000284.r00000a.seg",
    "00000000000000000001-00000000000000000284.seg.r000001",
    "00000000000000000284-00000000000000000001.r000001.seg",
    "00000000000000000042-20261129T140947250000000Z.r000000.snap",
    "00000000000000000042-20261129T140947250000000Z.r-00001.snap",
    "00000000000000000042-20261129T140947250000000Z.r000001.seg",
])
def test_malformed_marks_are_no_pitr_name(name: str) -> None:
    assert parse_segment_file(name) is None
    assert parse_snapshot_file(name) is None
    assert base_name(name) is None
    assert live_segments([name]) == ({}, [])
    assert live_snapshots([name]) == ({}, [])


def test_generations_outside_the_range_are_refused_when_written() -> None:
    with pytest.raises(ValueError, match="repair generation"):
        segment_name(1, 2, 1_000_000)
    with pytest.raises(ValueError, match="repair generation"):
        with_generation(SEGMENT, -1)


def test_the_highest_generation_wins_in_any_order_and_merges_still_cover() -> None:
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    names = [segment_name(1, 5, g) for g in (0, 1, 3)] + [segment_name(6, 9), segment_name(6, 9, 2)]
    names += [segment_name(10, 12), segment_name(13, 20), segment_name(10, 20, 1)]  # a merge, repaired once
    snaps = [snapshot_name(9, TS), snapshot_name(9, TS, 4), snapshot_name(20, TS + 1)]
    for _ in range(20):
        rng.shuffle(names)
        rng.shuffle(snaps)
        keep, superseded = live_segments(names)
        assert keep == {segment_name(1, 5, 3): (1, 5), segment_name(6, 9, 2): (6, 9),
                        segment_name(10, 20, 1): (10, 20)}
        assert sorted(superseded) == sorted(set(names) - set(keep))
        live, replaced = live_snapshots(snaps)
        assert live == {snapshot_name(9, TS, 4): 9, snapshot_name(20, TS + 1): 20}
        assert replaced == [snapshot_name(9, TS)]


def test_no_fall_back_to_a_lower_generation() -> None:
    """The rule is by name: with generation 2 present, generation 1 is superseded, whatever their bytes;
    the newest is what readers check (and refuse when it is damaged)."""
    keep, superseded = live_segments([segment_name(1, 5, 1), segment_name(1, 5, 2)])
    assert list(keep) == [segment_name(1, 5, 2)]
    assert superseded == [segment_name(1, 5, 1)]
