"""Which recoverable window and base a moment falls in, by the same rules as a restore."""

from __future__ import annotations

from dataclasses import dataclass

from pitr.errors import OutsideWindow, Window
from pitr.restore.plan import describe_windows
from pitr.timefmt import format_time
from pitr.timeline import Base, Timeline


@dataclass(frozen=True, slots=True)
class Moment:
    """A time target resolved against the timeline: its window, its base and its TTL cutoff."""

    ts_ns: int
    exclusive: bool
    window: Window
    base: Base

    @property
    def cutoff_ns(self) -> int:
        """TTL is judged here: a put expiring at or before this moment is absent."""
        return self.ts_ns - 1 if self.exclusive else self.ts_ns


def describe_moment(ts_ns: int, exclusive: bool) -> str:
    return f"{'before' if exclusive else 'at'} {format_time(ts_ns)}"


def locate(timeline: Timeline, ts_ns: int, *, exclusive: bool = False) -> Moment:
    """The window holding `ts_ns` and the newest base at or before it (see `plan_restore`).

    Raises OutsideWindow, carrying the windows, for a moment no restore could reach.
    """
    windows = timeline.windows
    if exclusive:
        window = next((w for w in reversed(windows) if w.start_ns < ts_ns <= w.end_ns + 1), None)
    else:
        window = next((w for w in reversed(windows) if w.start_ns <= ts_ns <= w.end_ns), None)
    if window is None:
        raise OutsideWindow(f"{describe_moment(ts_ns, exclusive)} is outside the archive; "
                            f"{describe_windows(windows)}", windows)
    bases = [b for b in timeline.bases if window.start_lsn <= b.lsn <= window.end_lsn and
             (b.ts_ns < ts_ns if exclusive else b.ts_ns <= ts_ns)]
    if not bases:
        raise OutsideWindow(f"no restore base {describe_moment(ts_ns, exclusive)}; "
                            f"{describe_windows(windows)}", windows)
    return Moment(ts_ns, exclusive, window, bases[-1])
