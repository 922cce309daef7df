"""The `pitr` command: one module per subcommand; only this entry point exits."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

import trio

from pitr.cli import (
    archive,
    backups,
    cleanup,
    delete,
    export,
    get,
    import_,
    put,
    reindex,
    restore,
    snapshot,
    timeline,
    verify,
)
from pitr.cli.common import window_text
from pitr.errors import InvalidArgument, OutsideWindow, PitrError

COMMANDS = [put, get, delete, import_, export, archive, snapshot, backups, verify, restore, cleanup, timeline,
            reindex]
EXTRA = ("pitr.cli.history", "pitr.cli.log", "pitr.cli.diff")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pitr", description="Point-in-time recovery, audit and continuous archiving for key-value stores.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = list(COMMANDS)
    import importlib

    for name in EXTRA:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    for module in modules:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run one command; exit 0 on success, 1 on not-found or a failed check, 2 on usage errors."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = trio.run(args.run, args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers, not at interpreter exit
    except InvalidArgument as exc:
        print(f"pitr {args.command}: {exc}", file=sys.stderr)
        code = 2
    except OutsideWindow as exc:
        print(f"pitr {args.command}: {exc}", file=sys.stderr)
        for w in exc.windows:
            print(f"  recoverable: {window_text(w)}", file=sys.stderr)
        code = 1
    except PitrError as exc:
        hint = getattr(exc, "hint", None)
        print(f"pitr {args.command}: {exc}" + (f"\n  hint: {hint}" if hint else ""), file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print(f"pitr {args.command}: interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:
        # the reader went away (`pitr log | head`): stop quietly, as a command killed by SIGPIPE does;
        # stdout points at /dev/null so that flushing it at exit does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 128 + signal.SIGPIPE
    sys.exit(code)


if __name__ == "__main__":
    main()
