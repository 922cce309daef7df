"""pitr verify: check every file, the chain, the bindings and the catalog; report what remains restorable."""

from __future__ import annotations

import argparse
from contextlib import AsyncExitStack

from pitr.cli._checkpoints import add_verify_flags as add_witness_flag
from pitr.cli._checkpoints import verify_witness
from pitr.cli.common import add_json, add_repo, print_json, print_windows, progress_for, repositories
from pitr.status.records import record_verification
from pitr.verify import Finding, VerifyReport, verify_repository


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("verify", help="verify the repository's files, chain and catalog")
    p.add_argument("files", nargs="*", help="only these segment or snapshot files (no repository-wide claims)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="headers, footers and chain links only")
    mode.add_argument("--replay", action="store_true",
                      help="also replay the log between snapshots and compare state digests")
    p.add_argument("--state", metavar="DIR", help="instead, check a store's state database whole (every row's "
                   "checksum, the order, the state digest against the one it keeps)")
    add_witness_flag(p)
    add_repo(p, many=True)
    add_json(p)
    p.set_defaults(run=run)


def finding_text(f: Finding) -> str:
    where = ", ".join(x for x in (f"offset {f.offset}" if f.offset is not None else "",
                                  f"LSN {f.lsn}" if f.lsn is not None else "") if x)
    label = "CATALOG" if f.kind == "catalog" else "MISSING" if f.kind == "missing" else \
        "SUPERSEDED" if f.kind == "superseded" else "BROKEN"
    return f"{label} {f.file}{' (' + where + ')' if where else ''}: {f.message}"


def print_report(r: VerifyReport) -> None:
    if r.scope == "files":
        for f in r.findings:
            print(f"{r.url}: {finding_text(f)}")
        bad = {f.file for f in r.findings}
        for name in r.checked:
            if name not in bad:
                print(f"{r.url}: {name}: OK ({r.mode})")
        return
    state = "OK" if r.ok else f"{len(r.findings)} problem(s)" if r.findings else "NOT OK"
    print(f"{r.url}: {state} ({r.mode}: {r.files_checked} files, {r.bytes_checked:,} bytes, {r.seconds:.2f}s)")
    for f in r.findings:
        print(f"  {finding_text(f)}")
    for h in r.holes:
        print(f"  HOLE LSN {h.first_lsn}..{h.last_lsn}: {h.reason}")
    if r.checkpoints is not None and (r.checkpoints.checked or r.checkpoints.witness):
        c = r.checkpoints
        print(f"  checkpoints: {c.checked} signature(s) verified, newest LSN {c.newest_lsn}"
              + (f", against witness {c.witness}" if c.witness else "")
              + (f"; {c.unchecked_digests} chain digest(s) need --key-file" if c.unchecked_digests else ""))
    for a, b, matched in r.replays:
        print(f"  replay {a} -> {b}: {'state digest matches' if matched else 'MISMATCH'}")
    if r.catalog_damaged:
        print("  restorable windows unknown until the catalog is rebuilt (pitr reindex)")
        return
    if r.keyless:
        print("  checked without the key: structure and chain only; restorable windows need --key-file")
        return
    print_windows(r.windows)


async def run(args: argparse.Namespace) -> int:
    if args.state is not None:
        from pitr.cli._state_verify import run_state_verify

        return await run_state_verify(args)
    mode = "quick" if args.quick else "replay" if args.replay else "full"
    reports = []
    progress = progress_for(args)
    async with repositories(args) as repos, AsyncExitStack() as stack:
        witness = await verify_witness(args, stack)
        for repo in repos:
            reports.append(await verify_repository(repo, mode=mode, files=args.files, progress=progress,
                                                   witness=witness))
            await record_verification(repo, reports[-1])  # for `pitr status` (pitr/status/records.py)
            progress.done()
    if args.json:
        print_json([r.as_dict() for r in reports])
    else:
        for r in reports:
            print_report(r)
    return 0 if all(r.ok for r in reports) else 1
