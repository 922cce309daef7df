"""pitr archive: ship the store's durable commits to the repositories (once, or --follow).

With --source etcd://..., archive an etcd prefix through a spool store instead (pitr/cli/_etcd.py).
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

import anyio

from pitr.archiver import ArchiveOptions, Archiver
from pitr.cli._archive_session import archiver_session
from pitr.cli.common import add_data, add_json, add_repo, human_bytes, parse_every, print_json
from pitr.errors import Gap, PitrError
from pitr.snapshots.schedule import SnapshotSchedule, Snapshotter
from pitr.timeline import build_timeline


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    add_json(p)
    p.set_defaults(run=run)


def summary(archiver: Archiver) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for prog in archiver.progress:
        out.append({"repository": prog.repo.url, "archived_through_lsn": prog.last_lsn,
                    "segments_published": prog.segments_published, "bytes_published": prog.bytes_published,
                    "errors": prog.errors, "last_error": prog.last_error, **archiver.lag_percentiles()})
    return out


async def run(args: argparse.Namespace) -> int:
    if args.source is not None:
        from pitr.cli._etcd import run_archive

        return await run_archive(args)
    seconds, volume = parse_every(args.snapshot_every)
    schedule = SnapshotSchedule(every_seconds=seconds, every_bytes=volume)
    options = ArchiveOptions(interval=args.interval, watermark_interval=args.watermark_interval)
    async with archiver_session(args, options, sidecar=args.follow) as (archiver, prepare):
        if args.follow:
            snapshotter = Snapshotter(archiver, schedule, prepare) if schedule.enabled else None
            stop = anyio.Event()
            fatal: list[PitrError] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(_stop_on_signal, stop, tg.cancel_scope)
                print(f"archiving {args.data} every {args.interval:g}s; Ctrl-C to stop", file=sys.stderr)
                try:
                    await archiver.run(stop=stop,
                                       after_cycle=snapshotter.maybe_snapshot if snapshotter else None)
                except PitrError as exc:  # raised below, outside the task group, as itself
                    fatal.append(exc)
                tg.cancel_scope.cancel()
            if fatal:
                raise fatal[0]
        shipped = await archiver.cycle()
        holes = {prog.repo.url: build_timeline(prog.repo.catalog, await prog.repo.require_identity()).holes
                 for prog in archiver.progress}
    return report(args, archiver, {"shipped_commits": shipped}, holes)


def report(args: argparse.Namespace, archiver: Archiver, extra: dict[str, Any],
           holes: dict[str, list[Gap]] | None = None) -> int:
    """Print what was archived; exit status 1 when a repository is failing.

    Holes in a repository's older history (before a base the new commits
    follow) do not stop archiving, which keeps the new commits restorable;
    they are named on every run, in `--json` too, and `verify` fails on them.
    """
    rows = summary(archiver)
    for row in rows:
        found = (holes or {}).get(row["repository"], [])
        row["holes"] = [{"first_lsn": h.first_lsn, "last_lsn": h.last_lsn, "reason": h.reason} for h in found]
        for h in found:
            print(f"pitr archive: warning: {row['repository']} has a hole in its older history, LSN "
                  f"{h.first_lsn}..{h.last_lsn}: {h.reason}; archiving goes on after it (run `pitr verify`)",
                  file=sys.stderr)
    if args.json:
        print_json({**extra, "repositories": rows})
    else:
        for row in rows:
            print(f"{row['repository']}: archived through LSN {row['archived_through_lsn']}, "
                  f"{row['segments_published']} segments, {human_bytes(int(row['bytes_published']))} "
                  f"published" + (f", last error: {row['last_error']}" if row["last_error"] else ""))
    return 1 if any(r["last_error"] for r in rows) else 0


async def _stop_on_signal(stop: anyio.Event, scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _sig in signals:
            stop.set()
            return
