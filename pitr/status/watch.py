"""A running archiver's periodic look at its repositories: windows, snapshots, the last verification.

What the archiver does not see itself (retention deleting files, `pitr
verify` finding damage, a window shrinking) shows in the catalog and the
verify record. Every `every` seconds `RepositoryWatcher` reads both for each
repository (in worker threads; the catalog is read, never synced, so the
archiver's own indexing is never raced) and tells its `WatchObserver`s:

- `repository_observed` each time (metrics: window start and end, last verify result);
- `window_shrank` when the oldest restorable moment moved later, or the
  newest window ends earlier than before (a hole appeared);
- `retention_deleted` when snapshots or the oldest segments left the catalog;
- `verification_failed` when a new verify record says the verification failed.

Another process's changes are seen when it shares the catalog: always for a
directory repository, and for a remote one when it uses the same cache directory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import methodcaller

import anyio

from pitr.errors import PitrError, Window
from pitr.repo.identity import RepoIdentity
from pitr.repo.repository import Repository
from pitr.status.records import VerifyRecord, read_verify_record
from pitr.timeline import build_timeline

log = logging.getLogger("pitr.status")


@dataclass(frozen=True, slots=True)
class RepoView:
    """What one look at a repository's catalog and verify record found."""

    repo: str
    windows: tuple[Window, ...]
    snapshots: tuple[str, ...]
    first_lsn: int | None  # the oldest segment's first LSN
    verify: VerifyRecord | None


class WatchObserver:
    """The watcher's notifications; each does nothing here."""

    def repository_observed(self, view: RepoView) -> None:
        """A look at `view.repo` (every check interval)."""

    def window_shrank(self, before: RepoView, after: RepoView) -> None:
        """Less is restorable than at the previous look."""

    def retention_deleted(self, repo: str, snapshots: tuple[str, ...], first_lsn_before: int | None,
                          first_lsn_after: int | None) -> None:
        """Snapshots, or the oldest log, left the repository."""

    def verification_failed(self, record: VerifyRecord) -> None:
        """A verification of `record.repo` failed (a new record)."""


def shrank(before: RepoView, after: RepoView) -> bool:
    if not before.windows:
        return False
    if not after.windows:
        return True
    start = min(w.start_ns for w in before.windows), max(w.end_ns for w in before.windows)
    now = min(w.start_ns for w in after.windows), max(w.end_ns for w in after.windows)
    return now[0] > start[0] or now[1] < start[1]


def look(repo: Repository, ident: RepoIdentity) -> RepoView:
    """One look at `repo` (blocking: a worker-thread call)."""
    segments = repo.catalog.segments()
    return RepoView(repo.url, tuple(build_timeline(repo.catalog, ident).windows),
                    tuple(s.name for s in repo.catalog.snapshots()), segments[0].first_lsn if segments else None,
                    read_verify_record(repo.cache_dir))


class RepositoryWatcher:
    """Looks at each repository every `every` seconds and tells `observers` what changed."""

    def __init__(self, repos: Iterable[Repository], observers: Iterable[WatchObserver], every: float = 10.0) -> None:
        self.repos = list(repos)
        self.observers = list(observers)
        self.every = every
        self.views: dict[str, RepoView] = {}
        self._reported: set[str] = set()

    def _tell(self, what: str, call: Callable[[WatchObserver], None]) -> None:
        for observer in self.observers:
            try:
                call(observer)
            except Exception as exc:  # noqa: BLE001 - an observer never stops the watcher
                if what not in self._reported:
                    self._reported.add(what)
                    log.warning("observer %s failed on %s (reported once): %r", type(observer).__name__, what, exc)

    async def look_once(self) -> None:
        for repo in self.repos:
            try:
                ident = await repo.require_identity()
                view = await anyio.to_thread.run_sync(look, repo, ident)
            except PitrError as exc:  # reported once per repository; the archiver reports its own failures
                if repo.url not in self._reported:
                    self._reported.add(repo.url)
                    log.warning("cannot read the status of %s (archiving goes on): %s", repo.url, exc)
                continue
            before = self.views.get(repo.url)
            self.views[repo.url] = view
            self._tell("repository_observed", methodcaller("repository_observed", view))
            if before is not None:
                self._compare(before, view)

    def _compare(self, before: RepoView, view: RepoView) -> None:
        if shrank(before, view):
            self._tell("window_shrank", lambda o: o.window_shrank(before, view))
        gone = tuple(n for n in before.snapshots if n not in view.snapshots)
        if gone or (before.first_lsn is not None and (view.first_lsn is None or view.first_lsn > before.first_lsn)):
            self._tell("retention_deleted",
                       lambda o: o.retention_deleted(view.repo, gone, before.first_lsn, view.first_lsn))
        record = view.verify
        if record is not None and not record.ok and \
                (before.verify is None or before.verify.finished_ns != record.finished_ns):
            self._tell("verification_failed", lambda o: o.verification_failed(record))

    async def serve(self) -> None:
        """Look every `every` seconds until cancelled."""
        while True:
            await self.look_once()
            await anyio.sleep(self.every)
