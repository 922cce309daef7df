"""pitr archive: ship the store's durable commits to the repositories (once, or --follow).

With --source etcd://..., archive an etcd prefix through a spool store instead (pitr/cli/_etcd.py).
"""

from __future__ import annotations

import argparse
import signal
import sys
from contextlib import AsyncExitStack

import anyio

from pitr.archiver import ArchiveOptions, Archiver
from pitr.archiver.observe import Observers
from pitr.cli._archive_session import archiver_session
from pitr.cli._checkpoints import add_archive_flags as add_checkpoint_flags
from pitr.cli._checkpoints import checkpoint_writer
from pitr.cli._object_lock import add_object_lock
from pitr.cli._observers import add_observer_flags, check_observer_flags, observing, snapshot_taken
from pitr.cli.common import add_data, add_json, add_repo, parse_every
from pitr.cli.render import report
from pitr.errors import PitrError
from pitr.jsontypes import JSONObject
from pitr.snapshots.schedule import SnapshotSchedule, Snapshotter
from pitr.timeline import build_timeline


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("archive", help="archive the store's log (or an etcd prefix) into repositories")
    add_data(p)
    p.add_argument("--source", metavar="etcd://HOST:PORT[,...][/PREFIX]",
                   help="archive this etcd prefix instead of a store; --data is then its spool directory "
                        "(default: one in ~/.cache/pitr per prefix and repository)")
    add_repo(p, many=True)
    p.add_argument("--follow", action="store_true", help="keep archiving until interrupted")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between archive cycles (default 1)")
    p.add_argument("--watermark-interval", type=float, default=None, metavar="SECONDS",
                   help="while idle, publish 'complete through now' at most this often (default: --interval); "
                        "larger values save object-store requests, smaller ones keep recent targets restorable")
    p.add_argument("--snapshot-every", action="append", default=[], metavar="DURATION|SIZE",
                   help="with --follow: take a snapshot every DURATION (30m, 6h) and/or SIZE of log (1GiB)")
    add_checkpoint_flags(p)
    p.add_argument("--encrypt", action="store_true",
                   help="create new repositories encrypted under --key-file FILE (or $PITR_KEY_FILE): every segment "
                        "and snapshot sealed, the catalog keyed; an existing repository must be encrypted under it")
    add_observer_flags(p)
    add_object_lock(p)
    add_json(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    check_observer_flags(args)
    async with AsyncExitStack() as stack:  # the witnesses stay open as long as the archiver
        if args.source is not None:  # the key of --encrypt read and checked before a witness is made
            from pitr.cli._etcd import encryption_key, run_archive

            key = encryption_key(args)
            return await run_archive(args, await checkpoint_writer(args, stack), key)
        checkpoints = await checkpoint_writer(args, stack)
        return await _archive(args, ArchiveOptions(
            interval=args.interval, watermark_interval=args.watermark_interval,
            checkpoints=checkpoints))


async def _archive(args: argparse.Namespace, options: ArchiveOptions) -> int:
    seconds, volume = parse_every(args.snapshot_every)
    schedule = SnapshotSchedule(every_seconds=seconds, every_bytes=volume)
    observers = Observers()
    async with archiver_session(args, options, sidecar=args.follow, observer=observers) as (archiver, prepare):
        fatal: list[PitrError] = []
        async with observing(args, archiver, observers):
            if args.follow:
                await _follow(args, archiver, Snapshotter(archiver, schedule, prepare) if schedule.enabled else None,
                              observers, fatal)
            if not fatal:
                shipped = await archiver.cycle()
        if fatal:  # raised here, outside the task groups, as itself
            raise fatal[0]
        holes = {prog.repo.url: build_timeline(prog.repo.catalog, await prog.repo.require_identity()).holes
                 for prog in archiver.progress}
    extra: JSONObject = {"shipped_commits": shipped}
    if options.checkpoints is not None:
        extra["checkpoints_written"] = options.checkpoints.written
        if not args.json:
            print(f"signed {options.checkpoints.written} checkpoint(s)" + "".join(
                f", kept in witness {w.url}" for w in options.checkpoints.witnesses))
    return report(args, archiver, extra, holes)


async def _follow(args: argparse.Namespace, archiver: Archiver, snapshotter: Snapshotter | None,
                  observers: Observers, fatal: list[PitrError]) -> None:
    async def after_cycle() -> None:
        if snapshotter is not None:
            snapshot_taken(observers, archiver, await snapshotter.maybe_snapshot())

    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_stop_on_signal, stop, tg.cancel_scope)
        print(f"archiving {args.data} every {args.interval:g}s; Ctrl-C to stop", file=sys.stderr)
        try:
            await archiver.run(stop=stop, after_cycle=after_cycle if snapshotter else None)
        except PitrError as exc:
            fatal.append(exc)
        tg.cancel_scope.cancel()


async def _stop_on_signal(stop: anyio.Event, scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _sig in signals:
            stop.set()
            return
