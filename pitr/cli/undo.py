"""pitr undo --from T1 --to T2: bring every key the commits in (T1, T2] changed back to its state at T1."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pitr.cli.common import (
    add_data,
    add_json,
    add_repo,
    add_wait,
    encode_bytes,
    need_data,
    print_json,
    repositories,
    show_bytes,
    writer_wait,
)
from pitr.cli.moments import MOMENT_HELP, Moments, accept_relative_moments, resolve_moment
from pitr.errors import InvalidArgument
from pitr.jsontypes import JSONObject, JSONValue
from pitr.timefmt import Moment, format_time

if TYPE_CHECKING:
    from pitr.store.conditional import Expected
    from pitr.undo import UndoPlan


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("undo", help="revert the commits of a time range on a live store (one guarded commit)")
    accept_relative_moments(p)
    p.add_argument("--from", dest="from_", required=True, metavar="T1",
                   help=f"keep the commits up to T1 ({MOMENT_HELP})")
    p.add_argument("--to", required=True, metavar="T2", help="revert the commits after T1 up to T2 (inclusive)")
    p.add_argument("--prefix", help="only keys starting with this text")
    p.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
    conflicts = p.add_mutually_exclusive_group()
    conflicts.add_argument("--force", action="store_true",
                           help="also overwrite keys changed after T2 (conflicts) with their state at T1")
    conflicts.add_argument("--skip-conflicts", action="store_true",
                           help="revert the keys without a conflict and leave the others alone")
    add_data(p)
    add_wait(p)
    p.add_argument("--etcd", metavar="URL",
                   help="undo on the etcd cluster the archive was taken from (etcd://HOST:PORT[/PREFIX]; the "
                        "prefix, when given, limits the undo as --prefix does) instead of the store at --data")
    add_repo(p)
    add_json(p)
    p.set_defaults(run=run)


def _state_json(state: Expected) -> JSONValue:
    if state is None:
        return None
    value, expires = state
    doc: JSONObject = {"value": encode_bytes(value)}
    if expires is not None:
        doc["expires_at"] = format_time(expires)
    return doc


def _state_text(state: Expected) -> str:
    if state is None:
        return "(absent)"
    value, expires = state
    return show_bytes(value) + (f" (expires {format_time(expires)})" if expires is not None else "")


async def _plan(args: argparse.Namespace, first: Moment, last: Moment,
                prefix: bytes | None) -> tuple[int, int, UndoPlan]:
    """The range as times (an @LSN stands for its commit's time) and the undo's plan."""
    from pitr.undo import plan_undo

    async with repositories(args) as repos:
        repo = repos[0]
        await repo.sync()
        from_ns = (await resolve_moment(repo, first, "--from")).ts_ns
        to_ns = (await resolve_moment(repo, last, "--to")).ts_ns
        if from_ns >= to_ns:
            raise InvalidArgument(f"--from {args.from_} is not before --to {args.to}; give the earlier moment "
                                  "as --from")
        return from_ns, to_ns, await plan_undo(repo, from_ns, to_ns, prefix=prefix)


async def run(args: argparse.Namespace) -> int:
    from pitr.store import Store, StoreOptions
    from pitr.undo import StoreTarget, UndoOptions, apply_undo

    moments = Moments()
    first, last = moments.parse(args.from_, "--from"), moments.parse(args.to, "--to")
    prefix = args.prefix.encode() if args.prefix is not None else None
    options = UndoOptions(dry_run=args.dry_run, force=args.force, skip_conflicts=args.skip_conflicts)
    if args.etcd is not None:
        from pitr.sources.etcd import EtcdClient, parse_etcd_url
        from pitr.undo.etcd_target import EtcdTarget

        location = parse_etcd_url(args.etcd)
        if location.prefix_given:
            if prefix is not None and not prefix.startswith(location.prefix):
                raise InvalidArgument(f"--prefix {args.prefix} is not under the prefix of --etcd {args.etcd}")
            prefix = prefix if prefix is not None else location.prefix
        from_ns, to_ns, plan = await _plan(args, first, last, prefix)
        async with EtcdClient(location.endpoints) as client:
            result = await apply_undo(plan, EtcdTarget(client), options)
    else:
        data = need_data(args)
        from_ns, to_ns, plan = await _plan(args, first, last, prefix)
        async with Store(data, StoreOptions(lock_wait=await writer_wait(args))) as store:
            result = await apply_undo(plan, StoreTarget(store), options)
    if args.json:
        print_json({"from": format_time(from_ns), "to": format_time(to_ns), "dry_run": result.dry_run,
                    "revision" if args.etcd is not None else "lsn": result.position, "applied": len(result.applied),
                    "changes": [{"key": encode_bytes(c.key), "current": _state_json(c.current),
                                 "undo_to": _state_json(c.wanted), "conflict": c.conflict,
                                 "skipped": c.key in result.skipped} for c in result.changes]})
        return 0
    for c in result.changes:
        mark = "!" if c.conflict else "~"
        note = ""
        if c.conflict:
            note = "  (conflict: changed after --to; " + (
                "skipped)" if c.key in result.skipped else "overwritten)" if c.key in result.overridden
                else "not applied)")
        print(f"{mark} {show_bytes(c.key)}  {_state_text(c.current)} -> {_state_text(c.wanted)}{note}")
    span = f"({format_time(from_ns)}, {format_time(to_ns)}]"
    if result.dry_run:
        conflicts = len(result.conflicts)
        print(f"dry run: undo of {span} would revert {len(result.changes)} keys"
              + (f", {conflicts} with conflicts (--force or --skip-conflicts to proceed)" if conflicts else "")
              + "; nothing written")
    elif result.position is None:
        print(f"undo of {span}: nothing to write ({len(result.changes)} keys to revert"
              f"{', all skipped' if result.skipped else ''})")
    else:
        where = f"etcd revision {result.position}" if args.etcd is not None else f"commit LSN {result.position}"
        print(f"undo of {span}: reverted {len(result.applied)} keys in {where}"
              + (f"; {len(result.skipped)} conflicts left alone" if result.skipped else "")
              + (f"; {len(result.overridden)} conflicts overwritten" if result.overridden else ""))
    return 0
