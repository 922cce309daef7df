"""`pitr archive --follow --on-event CMD`: run a command with each event as JSON on its standard input.

CMD is split with `shlex` and run without a shell (no injection through
anything an event holds: the event goes to stdin, never into the command
line). Events wait in a bounded queue (`max_queue`); when it is full the event
is dropped and counted, so a slow hook never holds up the archiver, and one
hook runs at a time (events arrive in order). A hook that fails (exit status
not 0, cannot start, or runs longer than `timeout` seconds: it is killed) is
logged and counted, never retried. Event shapes: docs/operations.md,
"Metrics, heartbeat and events".
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import time
from collections.abc import Callable

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from pitr.archiver.observe import ArchiveObserver, PublishedSegment, TakenSnapshot
from pitr.errors import InvalidArgument
from pitr.jsontypes import JSONObject, JSONValue
from pitr.status.records import VerifyRecord
from pitr.status.watch import RepoView, WatchObserver
from pitr.timefmt import format_time

log = logging.getLogger("pitr.status")
EVENTS = ("segment_published", "snapshot_taken", "gap_recorded", "verification_failed", "window_shrank",
          "retention_deleted")


def _windows(view: RepoView) -> list[JSONObject]:
    return [{"start": format_time(w.start_ns), "end": format_time(w.end_ns), "start_lsn": w.start_lsn,
             "end_lsn": w.end_lsn} for w in view.windows]


class EventHook(ArchiveObserver, WatchObserver):
    """Turns notifications into JSON events and runs the hook for each, in order, off the archiver's path."""

    def __init__(self, command: str, *, max_queue: int = 1000, timeout: float = 30.0,
                 clock: Callable[[], int] = time.time_ns) -> None:
        try:
            self.argv = shlex.split(command)
        except ValueError as exc:
            raise InvalidArgument(f"--on-event {command!r}: {exc}") from exc
        if not self.argv:
            raise InvalidArgument("--on-event needs a command")
        self.timeout = timeout
        self._clock = clock
        self._send: MemoryObjectSendStream[JSONObject]
        self._receive: MemoryObjectReceiveStream[JSONObject]
        self._send, self._receive = anyio.create_memory_object_stream[JSONObject](max_queue)
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._warned: set[str] = set()

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning("%s (reported once; archiving goes on)", message)

    def emit(self, event: str, repo: str | None, **fields: JSONValue) -> None:
        now = self._clock()
        body: JSONObject = {"event": event, "time": format_time(now), "ts_ns": now, "repository": repo, **fields}
        try:
            self._send.send_nowait(body)
        except anyio.WouldBlock:
            self.dropped += 1
            self._warn_once("dropped", f"--on-event: the hook is too slow, {self.dropped} event(s) dropped")

    # the archiver's notifications
    def segment_published(self, segment: PublishedSegment) -> None:
        self.emit("segment_published", segment.repo, segment=segment.name, first_lsn=segment.first_lsn,
                  last_lsn=segment.last_lsn, commits=segment.commits, bytes=segment.size,
                  lag_seconds=round(segment.lag_ns / 1e9, 6))

    def gap_recorded(self, repo: str, gaps: tuple[tuple[int, int], ...]) -> None:
        self.emit("gap_recorded", repo, gaps=[{"lsn": lsn, "time_before": format_time(before)}
                                              for lsn, before in gaps])

    def snapshot_taken(self, snapshot: TakenSnapshot) -> None:
        for repo in snapshot.repos:
            self.emit("snapshot_taken", repo, snapshot=snapshot.name, lsn=snapshot.lsn,
                      snapshot_time=format_time(snapshot.ts_ns), bytes=snapshot.size)

    # the watcher's
    def window_shrank(self, before: RepoView, after: RepoView) -> None:
        self.emit("window_shrank", after.repo, before=_windows(before), after=_windows(after))

    def retention_deleted(self, repo: str, snapshots: tuple[str, ...], first_lsn_before: int | None,
                          first_lsn_after: int | None) -> None:
        self.emit("retention_deleted", repo, snapshots=list(snapshots), first_lsn_before=first_lsn_before,
                  first_lsn_after=first_lsn_after)

    def verification_failed(self, record: VerifyRecord) -> None:
        self.emit("verification_failed", record.repo, mode=record.mode, verified=format_time(record.finished_ns),
                  problems=record.problems, summary=record.summary)

    # delivering
    async def _deliver(self, event: JSONObject) -> None:
        data = (json.dumps(event, sort_keys=True) + "\n").encode()
        what = f"--on-event {shlex.join(self.argv)} ({event['event']})"
        try:
            with anyio.fail_after(self.timeout):
                result = await anyio.run_process(self.argv, input=data, check=False, stdout=subprocess.DEVNULL,
                                                  stderr=None)
        except TimeoutError:
            self.failed += 1
            self._warn_once("timeout", f"{what} ran longer than {self.timeout:g}s and was stopped")
            return
        except OSError as exc:
            self.failed += 1
            self._warn_once("start", f"{what} could not be run: {exc}")
            return
        if result.returncode != 0:
            self.failed += 1
            self._warn_once("status", f"{what} exited with status {result.returncode}")
            return
        self.delivered += 1

    async def serve(self) -> None:
        """Run the hook for each queued event until cancelled."""
        async with self._receive:
            async for event in self._receive:
                await self._deliver(event)

    def close(self) -> None:
        """Stop taking events (what is still queued is not delivered)."""
        self._send.close()
        self._receive.close()

    async def drain(self) -> None:
        """Deliver what is queued (a one-shot run, before it exits)."""
        while True:
            try:
                event = self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return
            await self._deliver(event)
