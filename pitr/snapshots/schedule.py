"""Periodic snapshots: by elapsed time and by log volume archived since the last snapshot."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from pitr.archiver.archiver import Archiver
from pitr.catalog.entries import SnapshotEntry
from pitr.errors import InvalidArgument
from pitr.snapshots.take import take_snapshot


@dataclass(frozen=True, kw_only=True, slots=True)
class SnapshotSchedule:
    """Take a snapshot when `every_seconds` have passed or `every_bytes` of log were archived."""

    every_seconds: float | None = None
    every_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.every_seconds is not None and self.every_seconds <= 0:
            raise InvalidArgument("snapshot interval must be positive")
        if self.every_bytes is not None and self.every_bytes <= 0:
            raise InvalidArgument("snapshot log volume must be positive")

    @property
    def enabled(self) -> bool:
        return self.every_seconds is not None or self.every_bytes is not None


class Snapshotter:
    """Tracks when the last snapshot was taken and takes the next one when due.

    Time is the event loop's clock unless `monotonic` is given (so trio's
    `MockClock` drives `every_seconds` in tests); construct it inside the loop.
    """

    def __init__(self, archiver: Archiver, schedule: SnapshotSchedule,
                 prepare: Callable[[], Awaitable[None]] | None = None,
                 monotonic: Callable[[], float] = anyio.current_time) -> None:
        self.archiver = archiver
        self.schedule = schedule
        self.prepare = prepare
        self._monotonic = monotonic
        self._last_at = monotonic()
        self._bytes_at_last = self._archived_bytes()
        self.taken: list[SnapshotEntry] = []

    def _archived_bytes(self) -> int:
        return sum(p.bytes_published for p in self.archiver.progress)

    def due(self) -> bool:
        s = self.schedule
        if s.every_seconds is not None and self._monotonic() - self._last_at >= s.every_seconds:
            return True
        return s.every_bytes is not None and self._archived_bytes() - self._bytes_at_last >= s.every_bytes

    async def maybe_snapshot(self) -> SnapshotEntry | None:
        if not self.schedule.enabled or not self.due():
            return None
        entry = await take_snapshot(self.archiver, prepare=self.prepare)
        self._last_at = self._monotonic()
        self._bytes_at_last = self._archived_bytes()
        self.taken.append(entry)
        return entry
