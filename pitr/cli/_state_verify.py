"""`pitr verify --state DIR`: the command-line side of `pitr.verify.state`."""

from __future__ import annotations

import argparse

import anyio

from pitr.cli.common import print_json
from pitr.errors import InvalidArgument


async def run_state_verify(args: argparse.Namespace) -> int:
    """Check the state database at `--state` whole; exit 0 only when every check passes."""
    from pitr.verify.state import verify_state

    if args.files or args.quick or args.replay:
        raise InvalidArgument("--state checks a store's state database: it takes no files, --quick or --replay")
    report = await anyio.to_thread.run_sync(verify_state, args.state)
    if args.json:
        print_json(report.as_dict())
    else:
        print("\n".join(report.lines()))
    return 0 if report.ok else 1
