"""pitr timeline: the recoverable windows, snapshots, holes and damaged files of each repository.

Exits 1 when anything known is missing or damaged (a hole, a file that could
not be indexed or that verify found damaged, a snapshot that does not match
the log) or nothing is restorable; the listing is printed either way.

The text form starts with a picture of the windows and snapshots on a time
axis (pitr/cli/timeline_picture.py), coloured on a terminal; `--plain` keeps
it uncoloured, `--json` prints the data alone.
"""

from __future__ import annotations

import argparse
import sys

from pitr.cli.common import add_json, add_repo, print_json, repositories, window_json, window_text
from pitr.cli.timeline_picture import picture_of, print_picture
from pitr.errors import InvalidArgument
from pitr.jsontypes import JSONObject
from pitr.repo.identity import RepoIdentity
from pitr.timefmt import format_time
from pitr.timeline import Timeline, build_timeline


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("timeline", help="show the recoverable windows, holes and damaged files")
    p.add_argument("--plain", action="store_true", help="plain text: no colours, even on a terminal")
    p.add_argument("--width", type=int, default=60, help="columns of the time axis (default 60)")
    add_repo(p, many=True)
    add_json(p)
    p.set_defaults(run=run)


def timeline_json(url: str, tl: Timeline, ident: RepoIdentity, segments: int, last_lsn: int | None) -> JSONObject:
    return {"repository": url, "store_id": str(ident.store_id), "name": ident.name, "ok": tl.ok,
            "windows": [window_json(w) for w in tl.windows],
            "gaps": [{"first_lsn": a, "last_lsn": b} for a, b in tl.gaps],
            "holes": [{"first_lsn": h.first_lsn, "last_lsn": h.last_lsn, "reason": h.reason} for h in tl.holes],
            "damaged": [{"file": c.name, "kind": c.kind, "status": c.status, "first_lsn": c.first_lsn,
                         "last_lsn": c.last_lsn, "detail": c.detail,
                         "checked": format_time(c.checked_ns) if c.checked_ns else None,
                         "checked_ns": c.checked_ns or None} for c in tl.damaged],
            "unverified": [{"first_lsn": a, "last_lsn": b} for a, b in tl.unverified],
            "bases": [{"lsn": b.lsn, "time": format_time(b.ts_ns), "ts_ns": b.ts_ns, "snapshot": b.snapshot}
                      for b in tl.bases],
            "unbound_snapshots": [*tl.unbound_snapshots], "segments": segments, "last_lsn": last_lsn}


def print_timeline(r: JSONObject, tl: Timeline, *, width: int = 60, colour: bool = False) -> None:
    print(f"{r['repository']}  store {r['name']} ({r['store_id']})")
    picture = picture_of(tl, width)
    if picture is None:
        print("  no recoverable window")
    else:
        sys.stdout.flush()  # rich writes to the same stream
        print_picture(picture, colour=colour)
    for w in dict.fromkeys(tl.windows):
        print(f"  recoverable  {window_text(w)}")
    for h in tl.holes:
        print(f"  hole         LSN {h.first_lsn}..{h.last_lsn}: {h.reason}")
    for c in tl.damaged:
        what = "cannot be indexed" if c.status == "unindexed" else "damaged"
        when = f" (found {format_time(c.checked_ns)})" if c.checked_ns else ""
        print(f"  {what:<12} {c.name}: LSN {c.first_lsn}..{c.last_lsn}{when}")
    for a, b in tl.unverified:
        print(f"  unverified   LSN {a}..{b} (not yet checked by pitr verify)")
    for base in tl.bases:
        print(f"  base         LSN {base.lsn} at {format_time(base.ts_ns)}  "
              f"{base.snapshot or '(start of history)'}")
    for name in tl.unbound_snapshots:
        print(f"  unusable     {name} (does not match the log)")


async def run(args: argparse.Namespace) -> int:
    if not 10 <= args.width <= 1000:
        raise InvalidArgument(f"--width {args.width}: give 10 to 1000 columns")
    rows: list[JSONObject] = []
    timelines = []
    async with repositories(args) as repos:
        for repo in repos:
            ident = await repo.require_identity()
            await repo.sync()
            tl = build_timeline(repo.catalog, ident)
            segs = repo.catalog.segments()
            rows.append(timeline_json(repo.url, tl, ident, len(segs), segs[-1].last_lsn if segs else None))
            timelines.append(tl)
    if args.json:
        print_json(rows)
    else:
        colour = not args.plain and sys.stdout.isatty()
        for r, tl in zip(rows, timelines, strict=True):
            print_timeline(r, tl, width=args.width, colour=colour)
    return 0 if all(tl.ok for tl in timelines) else 1
