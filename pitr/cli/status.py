"""pitr status: per repository, the recovery point, the windows, the newest snapshot, the last verification
and the archiver's outcome, with exit codes for cron and monitoring.

Exit codes (this command's own, docs/operations.md "Status and exit codes for
monitoring"): 0 healthy, 1 attention (a threshold crossed, the archiver
failing), 2 broken (a hole, a damaged file, nothing restorable, a failed
verification, a repository that cannot be read). A usage error also exits 2.
"""

from __future__ import annotations

import argparse
import time

from pitr.cli.common import (
    add_data,
    add_json,
    add_repo,
    human_bytes,
    print_json,
    repo_urls,
    window_json,
    window_text,
)
from pitr.errors import PitrError
from pitr.jsontypes import JSONObject
from pitr.sizefmt import format_rate
from pitr.status.health import EXIT_CODES, RepoHealth, Thresholds, assess, worst
from pitr.timefmt import format_time, parse_duration


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="recovery point, windows, snapshot age, verification and archiver health",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="exit status: 0 healthy, 1 attention (a threshold crossed, the archiver failing),\n"
                              "2 broken (a hole, a damaged file, nothing restorable, a failed verification,\n"
                              "a repository that cannot be read; also a usage error)")
    add_repo(p, many=True)
    add_data(p)
    for flag, what in (("--max-rpo", "the recovery point (time since the newest restorable moment)"),
                       ("--max-snapshot-age", "the newest usable snapshot's age"),
                       ("--max-unverified", "the time since a full verification last passed")):
        p.add_argument(flag, metavar="DURATION", default=None,
                       help=f"exit 1 when {what} is longer (5s, 30m, 1d)")
    add_json(p)
    p.set_defaults(run=run)


def threshold_seconds(text: str | None, flag: str) -> float | None:
    """A threshold flag's duration (`5s`, `30m`, `1d12h`, `250ms`, or plain seconds) in seconds."""
    return None if text is None else parse_duration(text, what=flag) / 1e9


def _error_code(exc: PitrError) -> str:
    from pitr.cli.failure import ERROR_CODES

    return next((code for cls, code in ERROR_CODES if isinstance(exc, cls)), "error")


async def _assess_url(args: argparse.Namespace, url: str, now_ns: int, limits: Thresholds) -> RepoHealth:
    from pitr.repo.repository import open_repository

    try:
        async with open_repository(url, cache_dir=args.cache_dir, s3_endpoint=args.s3_endpoint) as repo:
            if getattr(args, "key_file", None):
                from pitr.repo.keyring import unlock_existing  # cryptography: only for a key

                await unlock_existing([repo], args.key_file)
            return await assess(repo, now_ns, limits, args.data)
    except PitrError as exc:  # a repository that cannot be read is broken, and the others are still judged
        health = RepoHealth(url, now_ns, error_code=_error_code(exc))
        hint = getattr(exc, "hint", None)
        health.problems.append(str(exc) + (f" (hint: {hint})" if hint else ""))
        return health


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def health_json(h: RepoHealth) -> JSONObject:
    tl = h.timeline
    snap = h.newest_snapshot
    v, a = h.verify, h.archiver
    return {
        "repository": h.url, "store_id": h.store_id, "name": h.name, "state": h.state,
        "error": h.error_code, "problems": list(h.problems), "warnings": list(h.warnings),
        "rpo_seconds": _seconds(h.rpo_seconds),
        "restorable_through": None if h.restorable_through_ns is None else format_time(h.restorable_through_ns),
        "restorable_through_ns": h.restorable_through_ns,
        "known_complete": None if h.watermark is None else format_time(h.watermark[1]),
        "known_complete_ns": None if h.watermark is None else h.watermark[1],
        "known_complete_lsn": None if h.watermark is None else h.watermark[0],
        "windows": [] if tl is None else [window_json(w) for w in tl.windows],
        "holes": [] if tl is None else [{"first_lsn": g.first_lsn, "last_lsn": g.last_lsn, "reason": g.reason}
                                        for g in tl.holes],
        "newest_snapshot": None if snap is None else {
            "snapshot": snap.snapshot, "lsn": snap.lsn, "time": format_time(snap.ts_ns), "ts_ns": snap.ts_ns,
            "age_seconds": _seconds(h.snapshot_age_seconds)},
        "newest_checkpoint": None if h.checkpoint is None else {
            "file": h.checkpoint[0], "lsn": h.checkpoint[1], "time": format_time(h.checkpoint[2]),
            "ts_ns": h.checkpoint[2], "age_seconds": _seconds(h.checkpoint_age_seconds)},
        "last_verification": None if v is None else {
            "mode": v.mode, "ok": v.ok, "time": format_time(v.finished_ns), "ts_ns": v.finished_ns,
            "files_checked": v.files_checked, "problems": v.problems, "summary": v.summary,
            "last_ok": None if v.last_ok_ns is None else format_time(v.last_ok_ns), "last_ok_ns": v.last_ok_ns},
        "archiver": None if a is None else {
            "pid": a.pid, "started_ns": a.started_ns, "updated": format_time(a.updated_ns),
            "updated_ns": a.updated_ns, "archived_lsn": a.archived_lsn, "failing": a.failing,
            "last_success": None if a.last_success_ns is None else format_time(a.last_success_ns),
            "last_success_ns": a.last_success_ns, "errors": a.errors,
            "recent_errors": [{"time": format_time(e.at_ns), "ts_ns": e.at_ns, "message": e.message}
                              for e in a.recent_errors],
            "upload": None if a.backlog is None else {
                "backlog_commits": a.backlog.commits, "backlog_bytes": a.backlog.bytes,
                "cap_bytes_per_s": a.backlog.cap_bytes_per_s, "rate_bytes_per_s": a.backlog.rate_bytes_per_s}},
        "cap_cost_seconds": _seconds(h.cap_cost_seconds),
    }


def upload_text(h: RepoHealth) -> str | None:
    """The archiver's upload backlog and what the cap costs, as one line (None: not measured, or
    nothing waits and there is no cap)."""
    b = None if h.archiver is None else h.archiver.backlog
    if b is None or (b.commits == 0 and b.cap_bytes_per_s is None):  # nothing to say
        return None
    size = "size unknown yet" if b.bytes is None else f"~{human_bytes(b.bytes)}"
    waiting = f"{b.commits:,} commit{'' if b.commits == 1 else 's'} waiting ({size})"
    if b.cap_bytes_per_s is None:
        return f"{waiting}, no upload cap"
    cost = h.cap_cost_seconds
    costs = "record too old to say what the cap costs now" if cost is None else \
        f"the cap adds {cost:.1f}s to the recovery point"
    return (f"{waiting} under the cap of {format_rate(b.cap_bytes_per_s)} (measured "
            f"{format_rate(b.rate_bytes_per_s or 0)}): {costs}")


def print_health(h: RepoHealth) -> None:
    print(f"{h.url}" + (f"  store {h.name} ({h.store_id})" if h.store_id else "") + f": {h.state.upper()}")
    if h.timeline is not None:
        end = h.restorable_through_ns
        if end is not None:
            print(f"  recovery point   {h.rpo_seconds:.1f}s (restorable through {format_time(end)})")
        if h.watermark is not None:
            print(f"  known complete   {format_time(h.watermark[1])} (LSN {h.watermark[0]})")
        for w in dict.fromkeys(h.timeline.windows):
            print(f"  window           {window_text(w)}")
    if h.newest_snapshot is not None:
        print(f"  newest snapshot  {h.newest_snapshot.snapshot}, {h.snapshot_age_seconds or 0:.0f}s old")
    if h.checkpoint is not None:
        print(f"  newest checkpoint LSN {h.checkpoint[1]}, signed {format_time(h.checkpoint[2])}, "
              f"{h.checkpoint_age_seconds or 0:.0f}s old")
    if h.verify is not None:
        v = h.verify
        passed = f"; last passed {format_time(v.last_ok_ns)}" if v.last_ok_ns is not None and not v.ok else ""
        print(f"  last verify      {v.mode} at {format_time(v.finished_ns)}: {'OK' if v.ok else 'FAILED'}{passed}")
    if h.archiver is not None:
        a = h.archiver
        last = "never" if a.last_success_ns is None else format_time(a.last_success_ns)
        print(f"  archiver         pid {a.pid}, last success {last}, through LSN {a.archived_lsn}, "
              f"{a.errors} errors" + (" (failing)" if a.failing else ""))
        for e in a.recent_errors:
            print(f"    error at {format_time(e.at_ns)}: {e.message}")
        upload = upload_text(h)
        if upload is not None:
            print(f"  upload           {upload}")
    for p in h.problems:
        print(f"  BROKEN: {p}")
    for warning in h.warnings:
        print(f"  ATTENTION: {warning}")


async def run(args: argparse.Namespace) -> int:
    limits = Thresholds(max_rpo=threshold_seconds(args.max_rpo, "--max-rpo"),
                        max_snapshot_age=threshold_seconds(args.max_snapshot_age, "--max-snapshot-age"),
                        max_unverified=threshold_seconds(args.max_unverified, "--max-unverified"))
    now_ns = time.time_ns()
    healths = [await _assess_url(args, url, now_ns, limits) for url in repo_urls(args)]
    state = worst(healths)
    if args.json:
        print_json({"state": state, "exit": EXIT_CODES[state], "time": format_time(now_ns),
                    "repositories": [health_json(h) for h in healths]})
    else:
        for h in healths:
            print_health(h)
    return EXIT_CODES[state]
