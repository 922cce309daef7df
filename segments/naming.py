"""File names that sort by log position; parsing is strict (names come from untrusted listings).

A segment or snapshot that `pitr repair` republishes carries a repair generation in
its name (``.r000001`` before the suffix): write-once storage never sees a name
written twice, and the higher generation of the same file supersedes the lower
(docs/format.md, "File names"). Generation 0 is the name without the mark.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

SEGMENT_SUFFIX = ".seg"
SNAPSHOT_SUFFIX = ".snap"
MAX_GENERATION = 999_999
_GENERATION = r"(?:\.r(\d{6}))?"
_SEGMENT = re.compile(rf"^(\d{{20}})-(\d{{20}}){_GENERATION}\.seg$")
_SNAPSHOT = re.compile(rf"^((\d{{20}})-\d{{8}}T\d{{6}}\d{{9}}Z){_GENERATION}\.snap$")


def _generation_mark(generation: int) -> str:
    if not 0 <= generation <= MAX_GENERATION:
        raise ValueError(f"a repair generation is 0..{MAX_GENERATION}, not {generation}")
    return f".r{generation:06d}" if generation else ""


def _parsed_generation(text: str | None) -> int | None:
    """The generation a name's mark gives (0 without one); None for the non-canonical ``.r000000``."""
    if text is None:
        return 0
    generation = int(text)
    return generation if generation else None


def segment_name(first_lsn: int, last_lsn: int, generation: int = 0) -> str:
    return f"{first_lsn:020d}-{last_lsn:020d}{_generation_mark(generation)}{SEGMENT_SUFFIX}"


def parse_segment_file(name: str) -> tuple[int, int, int] | None:
    """(first_lsn, last_lsn, repair generation) for a well-formed segment name, else None."""
    match = _SEGMENT.match(name)
    if match is None:
        return None
    first, last = int(match.group(1)), int(match.group(2))
    generation = _parsed_generation(match.group(3))
    return (first, last, generation) if first <= last and generation is not None else None


def parse_segment_name(name: str) -> tuple[int, int] | None:
    """(first_lsn, last_lsn) for a well-formed segment name (of any repair generation), else None."""
    parsed = parse_segment_file(name)
    return None if parsed is None else (parsed[0], parsed[1])


def snapshot_name(lsn: int, ts_ns: int, generation: int = 0) -> str:
    stamp = datetime.fromtimestamp(ts_ns // 1_000_000_000, UTC).strftime("%Y%m%dT%H%M%S")
    return f"{lsn:020d}-{stamp}{ts_ns % 1_000_000_000:09d}Z{_generation_mark(generation)}{SNAPSHOT_SUFFIX}"


def parse_snapshot_file(name: str) -> tuple[int, str, int] | None:
    """(LSN, the generation-0 name, repair generation) for a well-formed snapshot name, else None."""
    match = _SNAPSHOT.match(name)
    if match is None:
        return None
    generation = _parsed_generation(match.group(3))
    if generation is None:
        return None
    return int(match.group(2)), match.group(1) + SNAPSHOT_SUFFIX, generation


def parse_snapshot_name(name: str) -> int | None:
    """The LSN of a well-formed snapshot name (of any repair generation), else None."""
    parsed = parse_snapshot_file(name)
    return None if parsed is None else parsed[0]


def base_name(name: str) -> str | None:
    """A segment or snapshot name without its repair generation (the name generation 0 has), else None."""
    if (segment := parse_segment_file(name)) is not None:
        return segment_name(segment[0], segment[1])
    if (snapshot := parse_snapshot_file(name)) is not None:
        return snapshot[1]
    return None


def generation_of(name: str) -> int:
    """The repair generation of a segment or snapshot name (0 for any other name)."""
    segment = parse_segment_file(name)
    if segment is not None:
        return segment[2]
    snapshot = parse_snapshot_file(name)
    return 0 if snapshot is None else snapshot[2]


def with_generation(name: str, generation: int) -> str:
    """The segment or snapshot `name` under repair generation `generation` (ValueError for another name)."""
    base = base_name(name)
    if base is None:
        raise ValueError(f"{name!r} is not a segment or snapshot name")
    suffix = SEGMENT_SUFFIX if base.endswith(SEGMENT_SUFFIX) else SNAPSHOT_SUFFIX
    return base[: -len(suffix)] + _generation_mark(generation) + suffix
