"""`Commit` and `QueuedCommits`: what a writer gets back for one commit, and for a run of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from pitr.store._group_commit import Group

_new_tuple = tuple.__new__  # builds a NamedTuple in one C call


class Commit(NamedTuple):
    """An acknowledged commit: durable in the WAL when returned."""

    lsn: int
    ts_ns: int


class QueuedCommits:
    """A run of commits sequenced together by `Store.queue_commits`: LSNs `first_lsn..last_lsn`, in
    order, each its own record, all in one WAL write sharing one fsync (so after a crash either
    all of them are in the log or none is). Nothing of it is acknowledged before `wait` returns."""

    __slots__ = ("_group", "_check", "_acknowledged", "first_lsn", "times")

    def __init__(self, group: Group, first_lsn: int, times: list[int],
                 check: Callable[[Group, int, int], Commit]) -> None:
        self._group = group
        self._check = check
        self._acknowledged = False
        self.first_lsn = first_lsn
        self.times = times  #: the commit time of each commit, in LSN order

    @property
    def last_lsn(self) -> int:
        return self.first_lsn + len(self.times) - 1

    def __len__(self) -> int:
        return len(self.times)

    async def wait(self) -> None:
        """Return once every commit of the run is durable; raise (acknowledging none) otherwise."""
        await self._group.done.wait()
        self._check(self._group, self.first_lsn, self.times[0])  # raises if the group failed
        self._acknowledged = True

    @property
    def commits(self) -> list[Commit]:
        """The acknowledged commits, in order (after `wait` returned)."""
        if not self._acknowledged:
            raise RuntimeError("the run is not acknowledged yet: await wait() first")
        first = self.first_lsn
        return [_new_tuple(Commit, (first + i, ts)) for i, ts in enumerate(self.times)]
