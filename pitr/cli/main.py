"""The `pitr` command: one module per subcommand; only this entry point exits.

A run imports the module of the one subcommand it runs, and nothing else of the
others: `pitr --help` lists every subcommand from the table below, and
`pitr get KEY` never loads the archiver, the restore engine or boto3. The event
loop (trio) starts only for a subcommand whose `run` is a coroutine function.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
from collections.abc import Coroutine, Iterable, Sequence
from types import ModuleType
from typing import NoReturn, TypeVar, overload

# pitr.cli.common and pitr.cli.failure (and through them pitr.errors, dataclasses, datetime) are imported once
# the command line has parsed: `pitr --help` and a usage error need none of them

_N = TypeVar("_N")

# subcommand -> (its module, its one-line help: the same text its `register` gives, which a test checks)
COMMANDS: dict[str, tuple[str, str]] = {
    "put": ("pitr.cli.put", "set a key (one durable commit)"),
    "get": ("pitr.cli.get", "read a key now, or as of a moment with --repo and --at"),
    "delete": ("pitr.cli.delete", "remove a key (one durable commit)"),
    "import": ("pitr.cli.import_", "commit JSON lines (one commit per line or per batch)"),
    "export": ("pitr.cli.export", "print the current state as JSON lines sorted by key"),
    "archive": ("pitr.cli.archive", "archive the store's log (or an etcd prefix) into repositories"),
    "snapshot": ("pitr.cli.snapshot", "take a snapshot of the store into the repositories"),
    "backups": ("pitr.cli.backups", "list backups (snapshots)"),
    "verify": ("pitr.cli.verify", "verify the repository's files, chain and catalog"),
    "restore": ("pitr.cli.restore", "restore the state at a moment into a new store directory or etcd"),
    "cleanup": ("pitr.cli.cleanup", "delete snapshots and log outside the retention rule"),
    "timeline": ("pitr.cli.timeline", "show the recoverable windows, holes and damaged files"),
    "reindex": ("pitr.cli.reindex", "rebuild the catalog from the repository's files"),
    "history": ("pitr.cli.history", "every archived change to a key"),
    "log": ("pitr.cli.log", "archived commits in a range (JSON lines usable by pitr import)"),
    "diff": ("pitr.cli.diff", "keys added, removed and changed between two moments"),
    "status": ("pitr.cli.status", "recovery point, windows, snapshot age, verification and archiver health"),
    "copy": ("pitr.cli.copy", "copy a repository's history (or a window of it) into another, verifying every file"),
    "repair": ("pitr.cli.repair", "replace a repository's damaged or missing files with verified copies from a healthy copy"),
    "key": ("pitr.cli.key", "create an encryption key file, rotate or list a repository's keys"),
    "undo": ("pitr.cli.undo", "revert the commits of a time range on a live store (one guarded commit)"),
    "promote": ("pitr.cli.promote", "make a standby (restore --follow) a writable store with a new history"),
}


def command_module(name: str) -> ModuleType:
    """The module of subcommand `name` (imported now)."""
    return importlib.import_module(COMMANDS[name][0])


def terminal_columns() -> int:
    """The terminal's width as `shutil.get_terminal_size().columns` gives it ($COLUMNS, else the width of
    standard output's terminal, else 80), without importing shutil."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    try:
        return (os.get_terminal_size(stdout.fileno()).columns if stdout is not None else 0) or 80
    except (AttributeError, ValueError, OSError):
        return 80


class HelpFormatter(argparse.HelpFormatter):
    """argparse's own formatter, as wide as argparse makes it (the terminal's width less 2).

    argparse builds a formatter for every argument a parser adds, and its own
    imports shutil to measure the terminal (with zlib, bz2 and lzma: about 3 ms
    of every command's start); this one measures it without.
    """

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=terminal_columns() - 2)


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose subcommands report their own errors with their own usage line.

    argparse hands a subcommand's unknown arguments back to the top-level
    parser, which then prints `usage: pitr [-h] COMMAND ...`; here the
    subcommand that received them refuses them itself (`usage: pitr restore ...`).
    Under `--json` the usage error is one JSON object on stderr.
    """

    json_errors = False

    def _get_formatter(self) -> argparse.HelpFormatter:
        if self.formatter_class is argparse.HelpFormatter:  # a subcommand that chose a formatter keeps it
            return HelpFormatter(self.prog)
        return super()._get_formatter()

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
            from pitr.cli.failure import EXIT_USAGE

            sys.exit(EXIT_USAGE)
        super().error(message)


def build_parser(only: str | None = None, *, others: bool = True) -> argparse.ArgumentParser:
    """The whole parser, or with `only` one whose other subcommands are their names and help alone
    (with `others=False`, absent).

    Parsing a command line needs the flags of the subcommand it names and
    nothing of the others, so `main` builds only that one (importing only its
    module); listing the subcommands needs only the table.
    """
    parser = CommandParser(
        prog="pitr", description="Point-in-time recovery, audit and continuous archiving for key-value stores.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        if only is None or name == only:
            command_module(name).register(sub)
        elif others:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def parser_for(arguments: Sequence[str]) -> argparse.ArgumentParser:
    """The parser `main` needs for this command line.

    A command line that starts with a subcommand's name needs that
    subcommand alone: argparse only lists the others in the top level's help
    and errors, which come from a word before the name (`pitr -h get`). Each
    subcommand left out is one ArgumentParser and its gettext look-ups fewer
    (about 4 ms of every `pitr get` for the other 21).
    """
    named = _named_command(arguments)
    return build_parser(only=named or "", others=named is None or arguments[0] != named)


def _named_command(arguments: Sequence[str]) -> str | None:
    """The subcommand a command line names: its first word that is not an option (the top level takes none
    but -h)."""
    for word in arguments:
        if word == "--":
            continue
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


async def _awaited(coroutine: Coroutine[object, object, int]) -> int:
    return await coroutine


def _run(args: argparse.Namespace) -> int:
    """Run the subcommand: its `run` returns the exit code, or a coroutine that trio runs to get it.

    A command that needs no event loop (`pitr get KEY`) answers without importing trio at all.
    """
    outcome = args.run(args)
    if not isinstance(outcome, Coroutine):
        code: int = outcome
        return code
    import trio

    code = trio.run(_awaited, outcome)
    return code


def _command_name(args: argparse.Namespace) -> str:
    action = getattr(args, "action", None)
    return f"{args.command} {action}" if isinstance(action, str) else str(args.command)


def _interrupted(exc: BaseException) -> bool:
    from pitr.cli.failure import leaves

    return any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves(exc))


def _pipe_closed(exc: BaseException) -> bool:
    from pitr.cli.failure import leaves

    return all(isinstance(leaf, BrokenPipeError) for leaf in leaves(exc))


def main(argv: Sequence[str] | None = None) -> None:
    """Run one command; exit 0 on success, 1 on not-found, a failed check or a refusal, 2 on usage errors,
    70 on an internal error (a bug), 130 when interrupted, 141 when the reader closed the pipe."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    CommandParser.json_errors = "--json" in arguments
    parser = parser_for(arguments)
    args = parser.parse_args(arguments)
    command = _command_name(args)
    code: int
    try:
        from pitr.cli.common import check_ranges

        check_ranges(args)
        code = _run(args)
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
            from pitr.cli.failure import report_failure

            code = report_failure(command, exc, bool(getattr(args, "json", False)))
    sys.exit(code)


if __name__ == "__main__":
    main()
