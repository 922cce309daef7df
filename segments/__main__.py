"""Operator tools for pitr's on-disk files.

    python -m segments dump FILE [--json]        print records (WAL, segment) or entries (snapshot)
    python -m segments verify FILE... [--json]   check files and the chain between segments

Exit status: 0 all intact, 1 something damaged or invalid, 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from segments import cli_dump, cli_verify


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m segments",
        description="Inspect and check pitr WAL files, archive segments and snapshots.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_dump.add_arguments(commands.add_parser(
        "dump", help="print the records of a WAL file or segment, or a snapshot's entries",
        description=cli_dump.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    cli_verify.add_arguments(commands.add_parser(
        "verify", help="check every checksum and digest, and the chain between segments",
        description=cli_verify.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (argparse exits with 2 on usage errors)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = cli_dump.options_from(args) if args.command == "dump" else cli_verify.options_from(args)
    except ValueError as exc:  # options are checked when they are built
        parser.error(str(exc))
    try:
        if isinstance(options, cli_dump.DumpOptions):
            return cli_dump.run(options, sys.stdout)
        return cli_verify.run(options, sys.stdout)
    except BrokenPipeError:  # `dump | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1

if __name__ == "__main__":
    sys.exit(main())
