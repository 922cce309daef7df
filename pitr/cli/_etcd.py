"""The etcd side of `pitr archive --source etcd://...` and `pitr restore --dest etcd://...`."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import TYPE_CHECKING

import anyio

from pitr.archiver import ArchiveOptions
from pitr.archiver.observe import Observers
from pitr.cli._observers import early_observers, observing
from pitr.cli.common import parse_every, print_json, progress_for, repo_urls, repositories
from pitr.cli.render import report, show_plan
from pitr.jsontypes import JSONObject
from pitr.restore import KeySelection, RestorePlan, RestoreTarget
from pitr.snapshots.schedule import SnapshotSchedule
from pitr.sources.etcd import (
    EtcdClient,
    EtcdRestoreOptions,
    default_spool_dir,
    etcd_archiving,
    parse_etcd_url,
    restore_to_etcd,
)
from pitr.timefmt import format_time

if TYPE_CHECKING:
    from pitr.archiver import Archiver
    from pitr.archiver.checkpoints import CheckpointWriter
    from pitr.crypto.keys import KeyFile


def _shown(prefix: bytes) -> str:
    return prefix.decode("utf-8", "backslashreplace")


def encryption_key(args: argparse.Namespace) -> KeyFile | None:
    """The key of `--encrypt`, read and checked (present, private, well formed) before anything is opened."""
    if not args.encrypt:
        return None
    from pitr.cli._encrypt import read_encryption_key

    return read_encryption_key(args).key_file


async def run_archive(args: argparse.Namespace, checkpoints: CheckpointWriter | None = None,
                      key: KeyFile | None = None) -> int:
    """Load or resume, then catch up with etcd's current revision (or follow until a signal).

    With `key` (`--encrypt`) new repositories are created encrypted and existing ones must open with
    it; without it `--key-file` opens existing encrypted ones. `checkpoints` signs after watermarks."""
    location = parse_etcd_url(args.source)
    spool = args.data or default_spool_dir(location.prefix, repo_urls(args)[0])
    seconds, volume = parse_every(args.snapshot_every)
    schedule = SnapshotSchedule(every_seconds=seconds, every_bytes=volume) if args.follow else None
    complete = True
    observers = Observers()
    early = early_observers(args, observers, spool)  # the first load of the prefix is recorded and announced
    async with EtcdClient(location.endpoints) as client, \
            repositories(args, create=True, unlock=key is None) as repos:
        new = [repo for repo in repos if key is not None and await repo.identity() is None]
        async with etcd_archiving(client, location.prefix, spool, *repos, follow=args.follow,
                                  options=ArchiveOptions(interval=args.interval,
                                                         watermark_interval=args.watermark_interval,
                                                         checkpoints=checkpoints),
                                  snapshot_every=schedule, observer=observers, key_file=key) as session:
            for repo in new:
                block = (await repo.require_identity()).encryption
                if block is not None and not args.json:  # (the claim refuses a repository left plaintext)
                    print(f"pitr: {repo.url}: created encrypted (AES-256-GCM), opened by key id "
                          f"{block.key_id.hex()}", file=sys.stderr)
            follower = session.follower
            async with observing(args, session.archiver, observers, early):
                if args.follow:
                    print(f"archiving etcd {location.describe()} through spool {spool} every {args.interval:g}s; "
                          "Ctrl-C to stop", file=sys.stderr)
                    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                        async for _signal in signals:
                            break
                else:
                    complete = await follower.catch_up()
                    if not complete:
                        print(f"etcd did not confirm revisions after {follower.complete_revision} within "
                              f"{follower.options.catch_up_timeout:g}s (lower the members' "
                              "--experimental-watch-progress-notify-interval); the next run resumes there",
                              file=sys.stderr)
                # What the follower received so far, shipped while the observers still count it (leaving
                # the session ships whatever arrives after this too).
                await session.archiver.cycle()
                if checkpoints is not None:
                    await _sign_the_end(session.archiver, checkpoints)
    etcd = {"prefix": _shown(location.prefix), "spool": spool, "revision": follower.revision,
            "complete_through_revision": follower.complete_revision, "commits": follower.commits,
            "resyncs": follower.resyncs, "caught_up": complete}
    extra: JSONObject = {"etcd": etcd}
    if checkpoints is not None:
        extra["checkpoints_written"] = checkpoints.written
    if not args.json:
        print(f"etcd prefix {_shown(location.prefix)!r}: spool {spool} holds revision {follower.revision} "
              f"({follower.commits} revisions committed now, {follower.resyncs} base loads)")
        if checkpoints is not None:
            print(f"signed {checkpoints.written} checkpoint(s)" + "".join(
                f", kept in witness {w.url}" for w in checkpoints.witnesses))
    return report(args, session.archiver, extra)


async def _sign_the_end(archiver: Archiver, checkpoints: CheckpointWriter) -> None:
    """Sign each repository's newest watermark, whatever --checkpoint-interval says (and every later one
    of the run): the run's first checkpoint went out before the follower caught up, and the witness
    must reach the end of every run, one-shot or stopped (docs/decisions.md)."""
    checkpoints.interval = 0.0
    async with archiver.cycle_lock:  # not beside a cycle's own checkpoint
        for prog in archiver.progress:
            if prog.last_watermark is not None and prog.last_watermark[0] == prog.last_lsn:
                await checkpoints.after_watermark(prog.repo, prog.claimed, archiver.source.identity.store_id,
                                                  prog.last_lsn, prog.chain_digest)


async def run_restore(args: argparse.Namespace, target: RestoreTarget, selection: KeySelection | None = None) -> int:
    """Build the state at the target and write it under the destination prefix (only `selection`'s prefix)."""
    location = parse_etcd_url(args.dest)
    options = EtcdRestoreOptions(target=target, prefix=location.prefix if location.prefix_given else None,
                                 force=args.force, verify=not args.no_verify, dry_run=args.dry_run,
                                 pause_gc=True, selection=selection,  # the command owns its process
                                 witness=args.witness, witness_s3_endpoint=args.s3_endpoint)
    progress = progress_for(args)
    async with EtcdClient(location.endpoints) as client, repositories(args) as repos:
        result = await restore_to_etcd(repos, client, options, progress=progress,
                                       say=lambda text: print(text, file=sys.stderr))
    progress.done()
    if isinstance(result, RestorePlan):
        show_plan(result, args.json)
        return 0
    summary = {"dest": args.dest, "endpoint": result.endpoint, "prefix": _shown(result.prefix),
               "target": target.describe(), "lsn": result.target_lsn,
               "commit_time": format_time(result.target_ts_ns), "source_revision": result.source_revision,
               "keys": result.keys, "written": result.written, "unchanged": result.unchanged,
               "deleted": result.deleted, "expired_dropped": result.expired_dropped, "leases": result.leases,
               "transactions": result.transactions, "first_revision": result.first_revision,
               "last_revision": result.last_revision, "seconds": round(result.seconds, 3)}
    if args.json:
        print_json(summary)
    else:
        source = f" (etcd revision {result.source_revision})" if result.source_revision is not None else ""
        print(f"restored {target.describe()} into {result.endpoint} prefix {_shown(result.prefix)!r}: LSN "
              f"{result.target_lsn}{source}, {result.keys:,} keys: {result.written:,} written, "
              f"{result.unchanged:,} unchanged, {result.deleted:,} deleted, {result.leases} leases, in "
              f"{result.transactions} transactions (revisions {result.first_revision}..{result.last_revision}) "
              f"in {result.seconds:.2f}s")
    return 0
