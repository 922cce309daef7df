"""What `pitr archive` and `pitr restore` print, for a store and for etcd alike.

The etcd paths (pitr/cli/_etcd.py) print the same archive report and restore
plan as the store paths; both import them from here, so no subcommand module
imports another.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from pitr.cli.common import human_bytes, print_json
from pitr.errors import Gap
from pitr.jsontypes import JSONObject
from pitr.restore import RestorePlan
from pitr.restore.plan import SkippedBase
from pitr.timefmt import format_time

if TYPE_CHECKING:  # a restore, which prints a plan from here, need not import the archiver
    from pitr.archiver import Archiver


def report(args: argparse.Namespace, archiver: Archiver, extra: JSONObject,
           holes: dict[str, list[Gap]] | None = None) -> int:
    """Print what was archived; exit status 1 when a repository is failing.

    Holes in a repository's older history (before a base the new commits
    follow) do not stop archiving, which keeps the new commits restorable;
    they are named on every run, in `--json` too, and `verify` fails on them.
    """
    lag = archiver.lag_percentiles()
    rows: list[JSONObject] = []
    for prog in archiver.progress:
        found = (holes or {}).get(prog.repo.url, [])
        rows.append({"repository": prog.repo.url, "archived_through_lsn": prog.last_lsn,
                     "segments_published": prog.segments_published, "bytes_published": prog.bytes_published,
                     "errors": prog.errors, "last_error": prog.last_error, **lag,
                     "holes": [{"first_lsn": h.first_lsn, "last_lsn": h.last_lsn, "reason": h.reason}
                               for h in found]})
        for h in found:
            print(f"pitr archive: warning: {prog.repo.url} has a hole in its older history, LSN "
                  f"{h.first_lsn}..{h.last_lsn}: {h.reason}; archiving goes on after it (run `pitr verify`)",
                  file=sys.stderr)
    if args.json:
        print_json({**extra, "repositories": rows})
    else:
        for prog in archiver.progress:
            print(f"{prog.repo.url}: archived through LSN {prog.last_lsn}, "
                  f"{prog.segments_published} segments, {human_bytes(prog.bytes_published)} "
                  f"published" + (f", last error: {prog.last_error}" if prog.last_error else ""))
    return 1 if any(prog.last_error for prog in archiver.progress) else 0


def skipped_json(skipped: tuple[SkippedBase, ...]) -> list[JSONObject]:
    return [{"snapshot": s.snapshot, "lsn": s.lsn, "reason": s.reason} for s in skipped]


def plan_json(plan: RestorePlan) -> JSONObject:
    return {"target": plan.target.describe(), "target_lsn": plan.target_lsn,
            "target_commit_time": format_time(plan.target_ts_ns), "ttl_cutoff": format_time(plan.cutoff_ns),
            "base": {"lsn": plan.base.lsn, "time": format_time(plan.base.ts_ns),
                     "snapshot": plan.base.snapshot},
            "segments": [s.name for s in plan.segments], "commits_to_replay": plan.commits_to_replay,
            "bytes_to_read": plan.bytes_to_read, "skipped_bases": skipped_json(plan.skipped),
            "notes": list(plan.notes)}


def show_plan(plan: RestorePlan, as_json: bool) -> None:
    """Print a dry run's plan."""
    if as_json:
        print_json(plan_json(plan))
        return
    print(f"plan: restore {plan.target.describe()} -> LSN {plan.target_lsn} "
          f"(commit at {format_time(plan.target_ts_ns)})")
    print(f"  base: {plan.base.snapshot or 'start of history'} (LSN {plan.base.lsn})")
    print(f"  replay {plan.commits_to_replay:,} commits from {len(plan.segments)} segments; "
          f"read {human_bytes(plan.bytes_to_read)}")
    for skipped in plan.skipped:
        print(f"  skipped base {skipped.snapshot} (LSN {skipped.lsn}): {skipped.reason}")
    for note in plan.notes:
        print(f"  note: {note}")
    print("  nothing was restored (--dry-run)")
