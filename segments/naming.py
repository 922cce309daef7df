"""File names that sort by log position; parsing is strict (names come from untrusted listings)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

SEGMENT_SUFFIX = ".seg"
SNAPSHOT_SUFFIX = ".snap"
_SEGMENT = re.compile(r"^(\d{20})-(\d{20})\.seg$")
_SNAPSHOT = re.compile(r"^(\d{20})-(\d{8}T\d{6}\d{9}Z)\.snap$")


def segment_name(first_lsn: int, last_lsn: int) -> str:
    return f"{first_lsn:020d}-{last_lsn:020d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> tuple[int, int] | None:
    """(first_lsn, last_lsn) for a well-formed segment name, else None."""
    match = _SEGMENT.match(name)
    if match is None:
        return None
    first, last = int(match.group(1)), int(match.group(2))
    return (first, last) if first <= last else None


def snapshot_name(lsn: int, ts_ns: int) -> str:
    stamp = datetime.fromtimestamp(ts_ns // 1_000_000_000, UTC).strftime("%Y%m%dT%H%M%S")
    return f"{lsn:020d}-{stamp}{ts_ns % 1_000_000_000:09d}Z{SNAPSHOT_SUFFIX}"


def parse_snapshot_name(name: str) -> int | None:
    """The LSN of a well-formed snapshot name, else None."""
    match = _SNAPSHOT.match(name)
    return int(match.group(1)) if match else None
