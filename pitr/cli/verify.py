"""pitr verify: check every file, the chain and the bindings; report what remains restorable."""

from __future__ import annotations

import argparse

from pitr.cli.common import Progress, add_json, add_repo, print_json, repositories, window_text
from pitr.verify import verify_repository


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("verify", help="verify the repository's files and chain")
    p.add_argument("files", nargs="*", help="only these segment or snapshot files")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="headers, footers and chain links only")
    mode.add_argument("--replay", action="store_true",
                      help="also replay the log between snapshots and compare state digests")
    add_repo(p, many=True)
    add_json(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    mode = "quick" if args.quick else "replay" if args.replay else "full"
    reports = []
    progress = Progress()
    async with repositories(args) as repos:
        for repo in repos:
            reports.append(await verify_repository(repo, mode=mode, files=args.files, progress=progress))
            progress.done()
    if args.json:
        print_json([r.as_dict() for r in reports])
    else:
        for r in reports:
            state = "OK" if r.ok else f"{len(r.findings)} problem(s)"
            print(f"{r.url}: {state} ({r.mode}: {r.files_checked} files, {r.bytes_checked:,} bytes, "
                  f"{r.seconds:.2f}s)")
            for f in r.findings:
                where = ", ".join(x for x in (f"offset {f.offset}" if f.offset is not None else "",
                                              f"LSN {f.lsn}" if f.lsn is not None else "") if x)
                print(f"  BROKEN {f.file}{' (' + where + ')' if where else ''}: {f.message}")
            for a, b, matched in r.replays:
                print(f"  replay {a} -> {b}: {'state digest matches' if matched else 'MISMATCH'}")
            print("  restorable:" if r.windows else "  nothing is restorable")
            for w in r.windows:
                print(f"    {window_text(w)}")
    return 0 if all(r.ok for r in reports) else 1
