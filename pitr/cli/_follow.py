"""`pitr restore --latest --follow --dest DIR`: the command line of a warm standby (`pitr.follow`)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import anyio

from pitr.cli.common import print_json, progress_for, repositories
from pitr.errors import InvalidArgument, file_error
from pitr.follow import FollowOptions, FollowStatus, follow
from pitr.timefmt import format_time, parse_duration

QUIET_REPORT_SECONDS = 10.0  # on a terminal, a caught-up standby says so this often
TRACE_ENV = "PITR_FOLLOW_TRACE"  # a file: one JSON line per look at the repository (what it cost)


def _check_flags(args: argparse.Namespace) -> float | None:
    """The --interval in seconds; refuses the restore flags a standby cannot honour."""
    if not args.follow:
        raise InvalidArgument("--interval and --catch-up apply only with --follow")
    if not args.latest:
        raise InvalidArgument("--follow follows the latest point: use it with --latest")
    if args.dest.startswith(("etcd://", "etcds://")):
        raise InvalidArgument("--follow builds a pitr store directory, not an etcd prefix")
    for flag, given in (("--prefix", args.prefix), ("--key", args.key), ("--dry-run", args.dry_run),
                        ("--base", args.base), ("--no-verify", args.no_verify),
                        ("--replace-foreign", args.replace_foreign), ("--exclusive", args.exclusive)):
        if given:
            raise InvalidArgument(f"{flag} does not apply with --follow (a standby holds every key, verified)")
    if args.repo is not None and len(args.repo) > 1:
        raise InvalidArgument("--follow follows one repository: give --repo once")
    if args.interval is None:
        return None  # the follower's default for the kind of repository
    return parse_duration(args.interval, what="--interval") / 1e9


class _Reporter:
    """JSON lines (one per look at the repository that changed something), or a line on the terminal
    when commits were applied and every QUIET_REPORT_SECONDS while caught up."""

    def __init__(self, json_lines: bool) -> None:
        self.json = json_lines
        self.last: FollowStatus | None = None
        self.said_at = 0.0

    def __call__(self, status: FollowStatus) -> None:
        before, self.last = self.last, status
        changed = before is None or (before.applied_lsn, before.archived_lsn, before.complete_through_ns) != \
            (status.applied_lsn, status.archived_lsn, status.complete_through_ns)
        if self.json:
            if changed:
                print_json({"event": "status", **status.as_dict()})
                sys.stdout.flush()
            return
        now = time.monotonic()
        if before is not None and before.applied_lsn == status.applied_lsn and \
                now - self.said_at < QUIET_REPORT_SECONDS:
            return
        self.said_at = now
        at = format_time(status.applied_ts_ns) if status.applied_ts_ns else "-"
        through = format_time(status.complete_through_ns) if status.complete_through_ns else "-"
        print(f"standby at LSN {status.applied_lsn:,} (commit at {at}); {status.behind_commits:,} commits, "
              f"{status.behind_ns / 1e9:.3f} s behind {status.repo} (complete through {through})", flush=True)


@contextmanager
def _trace_file() -> Iterator[Callable[[dict[str, object]], None] | None]:
    """The follower's trace into the file PITR_FOLLOW_TRACE names (appended, 0600), or none."""
    path = os.environ.get(TRACE_ENV)
    if not path:
        yield None
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise file_error(exc, path, f"open the follower's trace ({TRACE_ENV})") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        def write(record: dict[str, object]) -> None:
            out.write(json.dumps(record, sort_keys=True) + "\n")
            out.flush()

        yield write


async def run_follow(args: argparse.Namespace) -> int:
    """Follow until caught up (--catch-up) or stopped by SIGINT or SIGTERM: either way the summary line
    says where the standby stands (a signal during the first restore leaves no standby: exit 128+N)."""
    interval = _check_flags(args)
    options = FollowOptions(dest=args.dest, interval=interval, catch_up=args.catch_up, force=args.force)
    reporter = _Reporter(args.json)
    progress = progress_for(args)
    signalled: list[int] = []
    status: FollowStatus | None = None
    with _trace_file() as trace:
        async with repositories(args) as repos, anyio.create_task_group() as tg:
            tg.start_soon(_cancel_on_signal, tg.cancel_scope, signalled)
            status = await follow(repos[0], options, report=reporter, progress=progress,
                                  say=lambda text: print(text, file=sys.stderr), trace=trace)
            tg.cancel_scope.cancel()
    progress.done()
    if status is None:  # stopped by a signal: the standby stands where the last look left it
        status = reporter.last
        if status is None:
            name = signal.Signals(signalled[0]).name
            print(f"pitr restore: stopped by {name} before the standby at {args.dest} was built; nothing is "
                  "there (a rerun starts the restore again)", file=sys.stderr)
            return 128 + signalled[0]
    summary = {"event": "stopped", **status.as_dict()}
    if signalled:
        summary["signal"] = signal.Signals(signalled[0]).name
    if status.restored is not None:
        summary["restored_lsn"] = status.restored.target_lsn
        summary["store_id"] = str(status.restored.store_id)
    if args.json:
        print_json(summary)
        return 0
    how = f"stopped by {summary['signal']}" if signalled else f"caught up with {status.repo}"
    print(f"standby {status.dest} {how} at LSN {status.applied_lsn:,}: "
          f"{status.segments_applied:,} segments, {status.commits_applied:,} commits applied by this run"
          + (f" after restoring LSN {status.restored.target_lsn:,}" if status.restored is not None else ""))
    return 0


async def _cancel_on_signal(scope: anyio.CancelScope, signalled: list[int]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for sig in signals:
            signalled.append(int(sig))
            scope.cancel()
            return
