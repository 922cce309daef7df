"""The observers `pitr archive` runs beside its archiver: status record, metrics, heartbeat, event hook.

Each is built only when its flag asks for it, and imports its library
(prometheus_client, httpx) only then. Their tasks run in the command's task
group; none of them can stop or stall archiving (pitr/archiver/observe.py).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from pitr.archiver import Archiver
from pitr.archiver.observe import Observers, TakenSnapshot
from pitr.catalog.entries import SnapshotEntry
from pitr.errors import InvalidArgument
from pitr.status.events import EventHook
from pitr.status.recorder import StatusRecorder
from pitr.status.watch import RepositoryWatcher, WatchObserver

FOLLOW_ONLY = ("metrics", "heartbeat_url")


def add_observer_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", metavar="HOST:PORT", default=None,
                   help="with --follow: serve Prometheus metrics there (127.0.0.1:9187)")
    p.add_argument("--heartbeat-url", metavar="URL", default=None,
                   help="with --follow: GET this URL when the known-complete time advances (a dead-man switch)")
    p.add_argument("--heartbeat-interval", type=float, default=30.0, metavar="SECONDS",
                   help="call the heartbeat at most this often (default 30)")
    p.add_argument("--on-event", metavar="CMD", default=None,
                   help="run CMD (split like a shell would, run without one) with each event as JSON on stdin")
    p.add_argument("--check-every", type=float, default=10.0, metavar="SECONDS",
                   help="with --follow: look at windows, snapshots and verify results this often, for "
                        "metrics and events (default 10)")


def check_observer_flags(args: argparse.Namespace) -> None:
    """Refuse an observer flag that would do nothing here (rather than ignoring it)."""
    if not args.follow:
        for flag in FOLLOW_ONLY:
            if getattr(args, flag) is not None:
                raise InvalidArgument(f"--{flag.replace('_', '-')} needs --follow")
    if not args.heartbeat_interval > 0 or not args.check_every > 0:
        raise InvalidArgument("--heartbeat-interval and --check-every must be positive seconds")


def snapshot_taken(observers: Observers, archiver: Archiver, entry: SnapshotEntry | None) -> None:
    if entry is not None:
        observers.snapshot_taken(TakenSnapshot(tuple(p.repo.url for p in archiver.progress), entry.name,
                                               entry.lsn, entry.ts_ns, entry.size))


@dataclass(frozen=True, slots=True)
class EarlyObservers:
    """The observers that need no archiver to be built: the status record and the event hook."""

    recorder: StatusRecorder | None
    hook: EventHook | None


def early_observers(args: argparse.Namespace, observers: Observers, data_dir: str | None = None) -> EarlyObservers:
    """Build the status recorder (into `data_dir`, default `--data`) and the event hook the flags ask for and
    attach them to `observers` now, before the archiver starts, so that what happens while it starts (an
    etcd archive's first load of its prefix) is recorded and announced too; `observing` runs them."""
    data_dir = data_dir or args.data
    early = EarlyObservers(StatusRecorder(data_dir) if data_dir else None,
                           EventHook(args.on_event) if args.on_event else None)
    for observer in (early.recorder, early.hook):
        if observer is not None:
            observers.add(observer)
    return early


@asynccontextmanager
async def observing(args: argparse.Namespace, archiver: Archiver, observers: Observers,
                    early: EarlyObservers | None = None) -> AsyncIterator[None]:
    """Attach the observers the flags ask for to `observers` (the archiver's) and run their tasks
    while the block runs; a one-shot run writes its record and delivers its events before leaving.
    `early` are those `early_observers` attached before the archiver started (else built here)."""
    early = early or early_observers(args, observers)
    recorder, hook = early.recorder, early.hook
    if recorder is not None:
        recorder.archiver = archiver  # and so it measures the upload backlog
    watch_observers: list[WatchObserver] = []
    exporter = None
    if args.metrics:
        from pitr.status.metrics import MetricsExporter

        exporter = MetricsExporter(archiver, backlogs=None if recorder is None else recorder.backlogs)
        watch_observers.append(exporter)
        observers.add(exporter)
    heartbeat = None
    if args.heartbeat_url:
        from pitr.status.heartbeat import Heartbeat

        heartbeat = Heartbeat(args.heartbeat_url, [p.repo.url for p in archiver.progress],
                              every=args.heartbeat_interval)
        observers.add(heartbeat)
    if hook is not None:
        watch_observers.append(hook)
    if not args.follow:
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                if recorder is not None:
                    await recorder.measure()
                    await recorder.flush()
                if hook is not None:
                    await hook.drain()
                    hook.close()
        return
    if exporter is not None:
        exporter.start(args.metrics)
    try:
        async with anyio.create_task_group() as tg:
            for service in (recorder, hook, heartbeat):
                if service is not None:
                    tg.start_soon(service.serve)
            if watch_observers:
                watcher = RepositoryWatcher([p.repo for p in archiver.progress], watch_observers,
                                            every=args.check_every)
                tg.start_soon(watcher.serve)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
    finally:
        if exporter is not None:
            exporter.stop()
        if hook is not None:
            hook.close()
        with anyio.CancelScope(shield=True):
            if recorder is not None:
                await recorder.measure()
                await recorder.flush()
