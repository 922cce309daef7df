"""A picture of a repository's timeline on a time axis: what can be restored, at a glance.

    2026-12-02T07:00:00.000000000Z (LSN 0)                2026-12-02T09:00:00.000000000Z (LSN 912)
    |=====================...........==========================|  restorable
     ^             ^                 ^                            snapshots

Each column is an equal slice of time from the oldest restorable moment to the
newest. `=` marks a slice inside a recoverable window, `.` one that is not (a
gap or a damaged range between windows); `^` marks a slice holding a snapshot
(a base a restore can start from). The plain text is the same on a terminal,
where rich colours it.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

from pitr.errors import Window
from pitr.timefmt import format_time
from pitr.timeline import Timeline

RESTORABLE, NOT_RESTORABLE, SNAPSHOT = "=", ".", "^"
DEFAULT_WIDTH = 60


@dataclass(frozen=True, slots=True)
class Picture:
    """The axis of one timeline: its ends, one cell per time slice, and the snapshot marks."""

    start_ns: int
    end_ns: int
    start_lsn: int
    end_lsn: int
    cells: str  # RESTORABLE or NOT_RESTORABLE per slice
    marks: str  # SNAPSHOT or a space per slice

    def lines(self) -> list[str]:
        left = f"{format_time(self.start_ns)} (LSN {self.start_lsn})"
        right = f"{format_time(self.end_ns)} (LSN {self.end_lsn})"
        gap = len(self.cells) + 2 - len(left) - len(right)
        head = f"{left}{' ' * gap}{right}" if gap >= 2 else f"{left} .. {right}"  # the ends over the bar's ends
        return [head, f"|{self.cells}|  restorable", f" {self.marks}   snapshots"]


def draw(windows: list[Window], snapshot_times: list[int], width: int = DEFAULT_WIDTH) -> Picture | None:
    """The picture of `windows` and the snapshots at `snapshot_times` in `width` columns; None when
    nothing is restorable.

    A slice is restorable when any window overlaps it, so a window shorter than a slice still
    shows; a slice no window touches shows as not restorable, however short the gap it holds is
    compared with the axis (a gap of one commit in a day still takes a column).
    """
    if not windows or width < 1:
        return None
    start = min(w.start_ns for w in windows)
    end = max(w.end_ns for w in windows)
    span = max(end - start, 1)

    def column(ts_ns: int) -> int:
        return min(max((ts_ns - start) * width // span, 0), width - 1)

    cells = [NOT_RESTORABLE] * width
    for w in windows:
        for i in range(column(w.start_ns), column(w.end_ns) + 1):
            cells[i] = RESTORABLE
    ordered = sorted(windows, key=lambda w: w.start_ns)
    reach = ordered[0].end_ns  # the newest moment restorable so far, left to right
    for after in ordered[1:]:
        cut = column(reach) + 1
        if after.start_ns > reach and cut < column(after.end_ns):
            cells[cut] = NOT_RESTORABLE  # a gap shorter than a slice still takes a column
        reach = max(reach, after.end_ns)
    marks = [" "] * width
    for ts in snapshot_times:
        if start <= ts <= end:
            marks[column(ts)] = SNAPSHOT
    ends = sorted(windows, key=lambda w: (w.start_ns, w.start_lsn))
    last = max(windows, key=lambda w: (w.end_ns, w.end_lsn))
    return Picture(start, end, ends[0].start_lsn, last.end_lsn, "".join(cells), "".join(marks))


def picture_of(tl: Timeline, width: int = DEFAULT_WIDTH) -> Picture | None:
    return draw(list(dict.fromkeys(tl.windows)), [b.ts_ns for b in tl.bases if b.snapshot is not None], width)


def print_picture(picture: Picture, *, colour: bool) -> None:
    """The picture on standard output, indented; coloured by rich on a terminal."""
    if not colour:
        for line in picture.lines():
            print("  " + line)
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=True)
    head, _bar, marks = picture.lines()
    console.print(Text("  " + head, style="bold"))
    text = Text("  |")
    for cell, run in groupby(picture.cells):
        text.append("".join(run), style="green" if cell == RESTORABLE else "bold red")
    text.append("|  restorable")
    console.print(text)
    console.print(Text("  " + marks, style="yellow"))
