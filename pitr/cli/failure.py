"""How the `pitr` entry point reports a command that failed: one clear line (or one JSON object) per error.

Every `PitrError` is printed with its hint, the gaps of a `HistoryGap` and the
windows of an `OutsideWindow` (each once); an `OSError` that escaped its
boundary is translated into a `FileError`; an `ExceptionGroup` out of a task
group is unwrapped into its leaves. Anything else is an internal error: one
line, exit 70, and the traceback only with PITR_DEBUG=1.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import dataclass

from pitr.errors import (
    CatalogDamaged,
    CorruptData,
    DestinationExists,
    DiskFull,
    FileError,
    ForeignRepository,
    HistoryGap,
    InvalidArgument,
    NotARepository,
    ObjectExists,
    ObjectNotFound,
    OutsideWindow,
    PitrError,
    RepositoryLost,
    SourceError,
    StateDamaged,
    StorageError,
    StoreClosed,
    StoreIsFollower,
    StoreLocked,
    UndoConflict,
    UnsafeDestination,
    WrongKey,
    file_error,
)
from pitr.jsonbytes import bytes_to_json
from pitr.jsontypes import JSONObject
from pitr.timefmt import format_time

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE
REPORT_BUG = "please report this; run with PITR_DEBUG=1 for the traceback"

# the stable `error` codes of `--json` errors (docs/operations.md), most specific class first
ERROR_CODES: list[tuple[type[PitrError], str]] = [
    (InvalidArgument, "invalid_argument"),
    (StoreLocked, "store_locked"),
    (StoreClosed, "store_closed"),
    (CatalogDamaged, "catalog_damaged"),
    (StateDamaged, "state_damaged"),
    (CorruptData, "corrupt_data"),
    (HistoryGap, "history_gap"),
    (OutsideWindow, "outside_window"),
    (NotARepository, "not_a_repository"),
    (ForeignRepository, "foreign_repository"),
    (RepositoryLost, "repository_lost"),
    (UnsafeDestination, "unsafe_destination"),
    (DestinationExists, "destination_exists"),
    (WrongKey, "wrong_key"),
    (UndoConflict, "undo_conflict"),
    (StoreIsFollower, "store_is_follower"),
    (DiskFull, "disk_full"),
    (FileError, "file_error"),
    (SourceError, "source_error"),
    (ObjectNotFound, "object_not_found"),
    (ObjectExists, "object_exists"),
    (StorageError, "storage_error"),
]


def debugging() -> bool:
    """PITR_DEBUG=1 (or any value but empty and 0) shows tracebacks."""
    return os.environ.get("PITR_DEBUG", "") not in ("", "0")


def error_code(exc: PitrError) -> str:
    """The stable code of `exc` for `--json` output."""
    for cls, code in ERROR_CODES:
        if isinstance(exc, cls):
            return code
    return "error"


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, in order; `exc` itself if it is no group."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def as_pitr_error(exc: BaseException) -> PitrError | None:
    """`exc` as the PitrError a user can act on, or None when it is an internal error."""
    if isinstance(exc, PitrError):
        return exc
    if isinstance(exc, OSError):
        path = exc.filename if isinstance(exc.filename, str) else None
        translated = file_error(exc, path, "access")
        if path is None:  # the system call named no file: say so rather than print a placeholder
            reason = exc.strerror or str(exc) or type(exc).__name__
            return type(translated)(f"cannot access a file (the operating system did not say which): {reason}",
                                    operation="access", errno=exc.errno, hint=translated.hint)
        return translated
    return None


def _message(exc: BaseException) -> str:
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def error_json(exc: PitrError) -> JSONObject:
    """The JSON form of one error: code, message, and whatever locates it."""
    out: JSONObject = {"error": error_code(exc), "message": _message(exc)}
    for field in ("path", "offset", "lsn", "operation", "errno", "pid"):
        value = getattr(exc, field, None)
        if value is not None:
            out[field] = value
    if exc.hint:
        out["hint"] = exc.hint
    if isinstance(exc, HistoryGap):
        out["gaps"] = [{"first_lsn": g.first_lsn, "last_lsn": g.last_lsn, "reason": g.reason} for g in exc.gaps]
    if isinstance(exc, UndoConflict):
        out["keys"] = [bytes_to_json(key) for key in exc.keys]
    if isinstance(exc, OutsideWindow):
        out["windows"] = [{"start": format_time(w.start_ns), "end": format_time(w.end_ns),
                           "start_ns": w.start_ns, "end_ns": w.end_ns, "start_lsn": w.start_lsn,
                           "end_lsn": w.end_lsn} for w in exc.windows]
    return out


def error_lines(exc: PitrError) -> list[str]:
    """The text form of one error: the message, then its gaps, windows and hint, each once."""
    message = _message(exc)
    lines = [message]
    if isinstance(exc, HistoryGap):
        for g in exc.gaps:
            text = f"missing LSN {g.first_lsn}..{g.last_lsn} ({g.reason})"
            if f"LSN {g.first_lsn}..{g.last_lsn}" not in message:
                lines.append("  " + text)
    if isinstance(exc, OutsideWindow):
        for w in exc.windows:
            if f"LSN {w.start_lsn}..{w.end_lsn}" not in message:
                lines.append(f"  recoverable: {format_time(w.start_ns)} .. {format_time(w.end_ns)}  "
                             f"(LSN {w.start_lsn}..{w.end_lsn})")
    if exc.hint and exc.hint not in message:
        lines.append(f"  hint: {exc.hint}")
    return lines


@dataclass(frozen=True, slots=True)
class Reported:
    """What the entry point prints and the exit code it returns."""

    code: int
    text: list[str]
    document: JSONObject


def describe_failure(command: str, exc: BaseException) -> Reported | None:
    """How to report `exc` raised by `command`; None when it is an internal error (a bug)."""
    errors = [as_pitr_error(leaf) for leaf in leaves(exc)]
    known = [e for e in errors if e is not None]
    if len(known) != len(errors) or not known:
        return None
    code = EXIT_USAGE if all(isinstance(e, InvalidArgument) for e in known) else EXIT_FAILED
    text = [f"pitr {command}: {line}" if i == 0 else line for e in known for i, line in enumerate(error_lines(e))]
    if len(known) == 1:
        document = {"command": command, **error_json(known[0])}
    else:
        document = {"command": command, "error": "several", "message": f"{len(known)} errors",
                    "errors": [error_json(e) for e in known]}
    return Reported(code, text, document)


def describe_internal(command: str, exc: BaseException) -> Reported:
    """A bug: one line naming the exception, and how to get the traceback."""
    inner = [leaf for leaf in leaves(exc) if as_pitr_error(leaf) is None]
    first = inner[0] if inner else exc
    summary = f"{type(first).__name__}: {_message(first)}"
    return Reported(EXIT_INTERNAL, [f"pitr {command}: internal error: {summary}", f"  {REPORT_BUG}"],
                    {"command": command, "error": "internal_error", "message": summary, "hint": REPORT_BUG})


def print_report(report: Reported, as_json: bool) -> None:
    if as_json:
        sys.stderr.write(json.dumps(report.document, sort_keys=True) + "\n")
    else:
        sys.stderr.write("\n".join(report.text) + "\n")
    sys.stderr.flush()


def report_failure(command: str, exc: BaseException, as_json: bool) -> int:
    """Print `exc` for the user and return the exit code; re-raise a bug under PITR_DEBUG."""
    report = describe_failure(command, exc)
    if report is None:
        if debugging():
            raise exc
        report = describe_internal(command, exc)
    elif debugging():
        traceback.print_exception(exc, file=sys.stderr)
    print_report(report, as_json)
    return report.code
