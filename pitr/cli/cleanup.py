"""pitr cleanup: apply the retention rule (keep_count OR keep_days) to snapshots and the log."""

from __future__ import annotations

import argparse
import time

from pitr.cli.common import (
    add_json,
    add_repo,
    human_bytes,
    print_json,
    progress_for,
    repositories,
    window_json,
    window_text,
)
from pitr.retention import CleanupPlan, plan_cleanup, run_cleanup
from pitr.timefmt import format_time


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cleanup", help="delete snapshots and log outside the retention rule")
    p.add_argument("--keep-count", type=int, default=10, help="keep the N newest snapshots (default 10)")
    p.add_argument("--keep-days", type=float, default=30, help="and every snapshot younger than D days "
                   "(default 30)")
    p.add_argument("--dry-run", action="store_true", help="show what would go; delete nothing")
    add_repo(p, many=True)
    add_json(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    rows = []
    now = time.time_ns()
    progress = progress_for(args, unit="items")
    async with repositories(args) as repos:
        for repo in repos:
            plan = await plan_cleanup(repo, args.keep_count, args.keep_days, time.time_ns())
            deleted = 0 if args.dry_run else await run_cleanup(repo, plan, progress)
            progress.done()
            rows.append((repo.url, plan, deleted))
    if args.json:
        print_json([{"repository": url, "dry_run": args.dry_run, "deleted": deleted,
                     "snapshots": [s.name for s in plan.delete_snapshots],
                     "segments": [s.name for s in plan.delete_segments], "bytes": plan.bytes_freed,
                     "superseded": [i.name for i in plan.delete_superseded],
                     "watermarks": [i.name for i in plan.delete_watermarks],
                     "checkpoints": [i.name for i in plan.delete_checkpoints],
                     "locked": [{"object": x.name, "retain_until": format_time(x.until_ns),
                                 "retain_until_ns": x.until_ns, "remaining_s": round(x.remaining_s(now), 3)}
                                for x in plan.locked],
                     "held_back": plan.held_back,
                     "windows_before": [window_json(w) for w in plan.windows_before],
                     "windows_after": [window_json(w) for w in plan.windows_after]}
                    for url, plan, deleted in rows])
        return 0
    for url, plan, deleted in rows:
        verb = "would delete" if args.dry_run else "deleted"
        print(f"{url}: {verb} {len(plan.delete_snapshots)} snapshots and {len(plan.delete_segments)} "
              f"segments ({human_bytes(plan.bytes_freed)}); keeping {len(plan.keep_snapshots)} snapshots")
        for s in plan.delete_snapshots:
            print(f"  snapshot {s.name}")
        for g in plan.delete_segments:
            print(f"  segment  {g.name}")
        _print_write_once(plan, verb, now)
        print("  recoverable before: " + ("; ".join(window_text(w) for w in plan.windows_before) or "none"))
        print("  recoverable after:  " + ("; ".join(window_text(w) for w in plan.windows_after) or "none"))
        del deleted
    return 0


def _print_write_once(plan: CleanupPlan, verb: str, now_ns: int) -> None:
    """What a write-once repository leaves to cleanup: merge inputs, old watermarks, and what is locked."""
    if plan.delete_superseded or plan.delete_watermarks:
        print(f"  and {verb} {len(plan.delete_superseded)} superseded files (merge inputs, and damaged files a "
              f"repair republished) and "
              f"{len(plan.delete_watermarks)} old watermarks")
    if plan.delete_checkpoints:
        print(f"  and {verb} {len(plan.delete_checkpoints)} signed checkpoints before the oldest restorable point "
              "(the witness keeps its copies)")
    if plan.locked:
        last = max(plan.locked, key=lambda x: x.until_ns)
        print(f"  kept {len(plan.locked)} objects still under Object Lock retention (not deletable yet; the last "
              f"until {format_time(last.until_ns)}, {_remaining(last.remaining_s(now_ns))} from now):")
        for x in plan.locked:
            print(f"  locked   {x.name} until {format_time(x.until_ns)} ({_remaining(x.remaining_s(now_ns))} left)")
    if plan.held_back:
        print(f"  kept {len(plan.held_back)} more files the rule names until the retained ones can go with them "
              "(the start of the history moves all at once)")


def _remaining(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86_400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours}h" if days else f"{hours}h {rest // 60}m"
