"""The `pitr` command: one module per subcommand; only this entry point exits."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Iterable, Sequence
from typing import NoReturn, TypeVar, overload

import trio

from pitr.cli import (
    archive,
    backups,
    cleanup,
    delete,
    diff,
    export,
    get,
    history,
    import_,
    log,
    put,
    reindex,
    restore,
    snapshot,
    timeline,
    verify,
)
from pitr.cli.common import check_ranges
from pitr.cli.failure import EXIT_USAGE, leaves, report_failure

_N = TypeVar("_N")

COMMANDS = [put, get, delete, import_, export, archive, snapshot, backups, verify, restore, cleanup, timeline,
            reindex, history, log, diff]


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose subcommands report their own errors with their own usage line.

    argparse hands a subcommand's unknown arguments back to the top-level
    parser, which then prints `usage: pitr [-h] COMMAND ...`; here the
    subcommand that received them refuses them itself (`usage: pitr restore ...`).
    Under `--json` the usage error is one JSON object on stderr.
    """

    json_errors = False

    # argparse.ArgumentParser.parse_known_args's own overloads, so the override keeps its signature
    @overload
    def parse_known_args(self, args: Iterable[str] | None = None,
                         namespace: None = None) -> tuple[argparse.Namespace, list[str]]: ...
    @overload
    def parse_known_args(self, args: Iterable[str] | None, namespace: _N) -> tuple[_N, list[str]]: ...
    @overload
    def parse_known_args(self, *, namespace: _N) -> tuple[_N, list[str]]: ...

    def parse_known_args(self, args: Iterable[str] | None = None,
                         namespace: object = None) -> tuple[object, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and self._subparsers is None:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        if CommandParser.json_errors:
            sys.stderr.write(json.dumps({"error": "usage", "message": message, "usage": self.format_usage().strip(),
                                         "command": self.prog.removeprefix("pitr ")}, sort_keys=True) + "\n")
            sys.exit(EXIT_USAGE)
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="pitr", description="Point-in-time recovery, audit and continuous archiving for key-value stores.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def _command_name(args: argparse.Namespace) -> str:
    action = getattr(args, "action", None)
    return f"{args.command} {action}" if isinstance(action, str) else str(args.command)


def _interrupted(exc: BaseException) -> bool:
    return any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves(exc))


def _pipe_closed(exc: BaseException) -> bool:
    return all(isinstance(leaf, BrokenPipeError) for leaf in leaves(exc))


def main(argv: Sequence[str] | None = None) -> None:
    """Run one command; exit 0 on success, 1 on not-found, a failed check or a refusal, 2 on usage errors,
    70 on an internal error (a bug), 130 when interrupted, 141 when the reader closed the pipe."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    CommandParser.json_errors = "--json" in arguments
    parser = build_parser()
    args = parser.parse_args(arguments)
    command = _command_name(args)
    code: int
    try:
        check_ranges(args)
        code = trio.run(args.run, args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers, not at interpreter exit
    except BaseException as exc:  # noqa: BLE001 - the one place that turns every failure into an exit code
        if isinstance(exc, SystemExit | GeneratorExit):
            raise
        if _interrupted(exc):
            if getattr(args, "json", False):
                print(json.dumps({"command": command, "error": "interrupted", "message": "interrupted"}),
                      file=sys.stderr)
            else:
                print(f"pitr {command}: interrupted", file=sys.stderr)
            code = 128 + signal.SIGINT
        elif _pipe_closed(exc):
            # the reader went away (`pitr log | head`): stop quietly, as a command killed by SIGPIPE does;
            # stdout points at /dev/null so that flushing it at exit does not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            code = 128 + signal.SIGPIPE
        else:
            code = report_failure(command, exc, bool(getattr(args, "json", False)))
    sys.exit(code)


if __name__ == "__main__":
    main()
