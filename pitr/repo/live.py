"""Which segment and snapshot files hold the history, and which are superseded (read by no one).

Two rules, applied in this order (docs/format.md, "File names"):

1. **Repair generations.** Files with the same range (a segment's first and last
   LSN, a snapshot's LSN and time) are one file published more than once: the
   highest repair generation is the live one, the lower ones are superseded,
   whatever their bytes. A damaged newest generation is not passed over for an
   older one: readers report it damaged and refuse, and `pitr repair` publishes a
   newer generation. Falling back would bring back a file a repair already judged
   damaged, or let a damaged copy silently hide behind one nobody verified.
2. **Merges.** A segment whose LSNs a wider live segment covers (the inputs of a
   merge) is superseded.

Superseded files stay until `pitr cleanup` deletes them (`pitr.retention_objects`).
"""

from __future__ import annotations

from collections.abc import Iterable

from segments.naming import parse_segment_file, parse_snapshot_file


def live_segments(names: Iterable[str]) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """The segment files that hold the history, by name with their LSN range, and those superseded.

    Of the files with one range, the highest repair generation; of those, a merged
    segment supersedes the smaller ones it covers (a merge's inputs before cleanup).
    Names that are not segment names are ignored.
    """
    newest: dict[tuple[int, int], tuple[int, str]] = {}
    superseded: list[str] = []
    for name in names:
        parsed = parse_segment_file(name)
        if parsed is None:
            continue
        first, last, generation = parsed
        held = newest.get((first, last))
        if held is None or generation > held[0]:
            if held is not None:
                superseded.append(held[1])
            newest[(first, last)] = (generation, name)
        else:
            superseded.append(name)
    keep: dict[str, tuple[int, int]] = {}
    reach = -1
    for (first, last), (_generation, name) in sorted(newest.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        if last <= reach:
            superseded.append(name)
            continue
        keep[name] = (first, last)
        reach = max(reach, last)
    return keep, sorted(superseded)


def live_snapshots(names: Iterable[str]) -> tuple[dict[str, int], list[str]]:
    """The snapshot files that hold the history, by name with their LSN, and those a repair superseded.

    Of the files of one snapshot (one LSN and time), the highest repair generation.
    Names that are not snapshot names are ignored.
    """
    newest: dict[str, tuple[int, int, str]] = {}
    superseded: list[str] = []
    for name in names:
        parsed = parse_snapshot_file(name)
        if parsed is None:
            continue
        lsn, base, generation = parsed
        held = newest.get(base)
        if held is None or generation > held[1]:
            if held is not None:
                superseded.append(held[2])
            newest[base] = (lsn, generation, name)
        else:
            superseded.append(name)
    keep = {name: lsn for lsn, _generation, name in newest.values()}
    return keep, sorted(superseded)
