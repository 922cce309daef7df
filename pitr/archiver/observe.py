"""What a running archiver tells the world: the `ArchiveObserver` interface and `Observers`, a fan-out.

The archiver calls an observer on the event loop, synchronously, at the moment
each thing happens (a segment published, a watermark written, a repository
failing or archiving again, a gap in the source recorded). An observer must
return at once: it counts, or hands the work to a task of its own (the event
hook, the heartbeat, the status record do). The archiver wraps whatever it is
given in `Observers`, which logs an observer's exception and goes on, so no
observer can stop or stall archiving.

The command line composes the observers (`pitr/status/`): Prometheus metrics,
the heartbeat, the `--on-event` hook and the archiver's status record. The
archiver imports none of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger("pitr.archiver.observe")


@dataclass(frozen=True, slots=True)
class PublishedSegment:
    """A segment the archiver published and indexed in `repo`."""

    repo: str
    name: str
    first_lsn: int
    last_lsn: int
    commits: int
    size: int
    last_ts_ns: int  # the newest commit's time
    lag_ns: int  # from that commit to the publish


@dataclass(frozen=True, slots=True)
class TakenSnapshot:
    """A snapshot published into every repository of the archiver."""

    repos: tuple[str, ...]
    name: str
    lsn: int
    ts_ns: int
    size: int


class ArchiveObserver:
    """Every notification a running archiver gives; each does nothing here (override what you need)."""

    def segment_published(self, segment: PublishedSegment) -> None:
        """`segment` is published and indexed."""

    def watermark_written(self, repo: str, lsn: int, complete_through_ns: int) -> None:
        """`repo`'s watermark now says: every commit through `lsn`, and none after it up to
        `complete_through_ns` (the known-complete time advanced)."""

    def gap_recorded(self, repo: str, gaps: tuple[tuple[int, int], ...]) -> None:
        """The source lost history: each (LSN, time before) is a commit that follows a gap."""

    def repository_archived(self, repo: str, lsn: int, now_ns: int) -> None:
        """A cycle archived everything durable into `repo` (through `lsn`) without error."""

    def repository_failed(self, repo: str, error: str, now_ns: int) -> None:
        """A cycle failed for `repo` with a transient error (it is retried with backoff)."""

    def snapshot_taken(self, snapshot: TakenSnapshot) -> None:
        """A scheduled snapshot was published."""


class Observers(ArchiveObserver):
    """Several observers as one; an observer's exception is logged (once per kind) and dropped."""

    def __init__(self, observers: Iterable[ArchiveObserver] = ()) -> None:
        self.observers = list(observers)
        self._reported: set[tuple[str, str]] = set()

    def add(self, observer: ArchiveObserver) -> None:
        self.observers.append(observer)

    def _each(self, what: str, call: Callable[[ArchiveObserver], None]) -> None:
        for observer in self.observers:
            try:
                call(observer)
            except Exception as exc:  # noqa: BLE001 - an observer never stops the archiver
                key = (type(observer).__name__, what)
                if key not in self._reported:
                    self._reported.add(key)
                    log.warning("observer %s failed on %s (archiving goes on; reported once): %r",
                                key[0], what, exc)

    def segment_published(self, segment: PublishedSegment) -> None:
        self._each("segment_published", lambda o: o.segment_published(segment))

    def watermark_written(self, repo: str, lsn: int, complete_through_ns: int) -> None:
        self._each("watermark_written", lambda o: o.watermark_written(repo, lsn, complete_through_ns))

    def gap_recorded(self, repo: str, gaps: tuple[tuple[int, int], ...]) -> None:
        self._each("gap_recorded", lambda o: o.gap_recorded(repo, gaps))

    def repository_archived(self, repo: str, lsn: int, now_ns: int) -> None:
        self._each("repository_archived", lambda o: o.repository_archived(repo, lsn, now_ns))

    def repository_failed(self, repo: str, error: str, now_ns: int) -> None:
        self._each("repository_failed", lambda o: o.repository_failed(repo, error, now_ns))

    def snapshot_taken(self, snapshot: TakenSnapshot) -> None:
        self._each("snapshot_taken", lambda o: o.snapshot_taken(snapshot))


def as_observers(observer: ArchiveObserver | None) -> Observers:
    """`observer` behind the fan-out's exception guard (an empty fan-out for None)."""
    if isinstance(observer, Observers):
        return observer
    return Observers([] if observer is None else [observer])
