"""Errors raised by pitr.

Tree::

    PitrError                       root of everything pitr raises on purpose
    ├── InvalidArgument (ValueError) bad input: names the argument, key or line
    ├── StoreLocked                 another process holds the store (carries its PID)
    ├── StoreClosed                 the store was closed or poisoned by an fsync failure
    ├── CorruptData                 a file fails its checks (carries path, offset, LSN, hint)
    │   ├── CatalogDamaged          the derived catalog is damaged (hint: pitr reindex)
    │   └── StateDamaged            the live store's state database fails its checksums
    ├── HistoryGap                  an answer would span a hole in the history (carries the LSN ranges)
    ├── OutsideWindow               a restore or read target outside the recoverable window
    ├── NotARepository              no repository at that place (no directory, no identity document)
    ├── ForeignRepository           the repository holds another store's history
    ├── RepositoryLost              the repository lost the history an archiver continues
    ├── UnsafeDestination           a restore destination is live, inside a repository, or not a store
    ├── DestinationExists           a restore destination is not empty (use --force)
    ├── WrongKey                    a missing, wrong or unusable encryption key (nothing was written)
    ├── UndoConflict                keys changed since the range an undo reverts (left alone)
    ├── StoreIsFollower             the store is a standby following a repository (pitr promote makes it writable)
    ├── FileError                   an operating-system call on a file failed (path, operation, errno)
    │   └── DiskFull                no space left on the device (ENOSPC, EDQUOT, LMDB map full)
    ├── SourceError                 a source (etcd) failed or returned what pitr cannot use
    └── StorageError                a repository backend failed
        ├── ObjectNotFound
        └── ObjectExists            publishing would overwrite a published file

Errors from `segments`, `OSError` and LMDB errors are translated at the boundary
that owns the file, with the cause kept (`raise file_error(exc, path, "write") from exc`).
"""

from __future__ import annotations

import errno as errno_codes
import os
from collections.abc import Sequence
from dataclasses import dataclass

from segments import CorruptFile, SegmentsError


class PitrError(Exception):
    """Root of the errors pitr raises."""

    hint: str | None = None


class InvalidArgument(PitrError, ValueError):
    """An argument, key, value or input line is not acceptable."""


class StoreLocked(PitrError):
    """Another process is the store's writer."""

    def __init__(self, path: str, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f"process {pid}" if pid else "another process"
        super().__init__(f"{path}: store is locked by {holder}; only one writer may open it")


class StoreClosed(PitrError):
    """The store is closed, or stopped acknowledging after an fsync failure."""


def _located(message: str, path: str | None, offset: int | None, lsn: int | None) -> str:
    """`message` with the path, offset and LSN it does not already name."""
    parts = []
    if path is not None and path not in message:
        message = f"{path}: {message}"
    if offset is not None and f"offset {offset}" not in message:
        parts.append(f"offset {offset}")
    if lsn is not None and f"LSN {lsn}" not in message:
        parts.append(f"LSN {lsn}")
    return message + (f" ({', '.join(parts)})" if parts else "")


class CorruptData(PitrError):
    """A file fails a checksum, a bound or a layout rule."""

    def __init__(self, message: str, *, path: str | None = None, offset: int | None = None,
                 lsn: int | None = None, hint: str | None = None) -> None:
        self.path = path
        self.offset = offset
        self.lsn = lsn
        self.hint = hint
        self.message = message
        super().__init__(_located(message, path, offset, lsn))


REINDEX_HINT = "the catalog is derived data: run `pitr reindex` to rebuild it from the repository's files"


class CatalogDamaged(CorruptData):
    """The catalog (derived data) is damaged or disagrees with the files; `pitr reindex` rebuilds it."""

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, path=path, hint=hint or REINDEX_HINT)


@dataclass(frozen=True, slots=True)
class Window:
    """A recoverable interval of commit times (ns) and LSNs, inclusive."""

    start_ns: int
    end_ns: int
    start_lsn: int
    end_lsn: int


@dataclass(frozen=True, slots=True)
class Gap:
    """LSNs missing from a history (inclusive), and where they should have been found."""

    first_lsn: int
    last_lsn: int
    reason: str = "missing"


class HistoryGap(PitrError):
    """An answer would span LSNs the repository cannot read (missing or damaged files)."""

    def __init__(self, message: str, gaps: Sequence[Gap], *, hint: str | None = None) -> None:
        self.gaps = list(gaps)
        self.hint = hint
        super().__init__(message)


class OutsideWindow(PitrError):
    """The requested target is outside every recoverable window."""

    def __init__(self, message: str, windows: Sequence[Window]) -> None:
        self.windows = list(windows)
        super().__init__(message)


class NotARepository(PitrError):
    """Nothing at that place is a pitr repository (no directory, or no identity document)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.hint = hint
        super().__init__(message)


class ForeignRepository(PitrError):
    """The repository belongs to another store's history."""


class RepositoryLost(PitrError):
    """The repository no longer holds the history an archiver is continuing (deleted or replaced)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.hint = hint
        super().__init__(message)


class UnsafeDestination(PitrError):
    """A restore destination that must not be replaced: a live store, a repository, a foreign directory."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.hint = hint
        super().__init__(message)


class DestinationExists(PitrError):
    """The restore destination exists and is not empty."""


class WrongKey(PitrError):
    """The encryption key is missing, wrong, unreadable or unsafe; refused before anything is written."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.hint = hint
        super().__init__(message)


class UndoConflict(PitrError):
    """An undo would overwrite keys changed after the range it reverts; those keys are named."""

    def __init__(self, message: str, keys: Sequence[bytes], *, hint: str | None = None) -> None:
        self.keys = list(keys)
        self.hint = hint
        super().__init__(message)


class FileError(PitrError):
    """An operating-system call on a file failed; names the file and the operation."""

    def __init__(self, message: str, *, path: str | None = None, operation: str | None = None,
                 errno: int | None = None, hint: str | None = None) -> None:
        self.path = path
        self.operation = operation
        self.errno = errno
        self.hint = hint
        super().__init__(message)


class DiskFull(FileError):
    """No space is left on the device holding the file (ENOSPC, EDQUOT, or an LMDB map that is full)."""


_FULL = {errno_codes.ENOSPC, errno_codes.EDQUOT}


def file_error(exc: OSError, path: str | None, operation: str, *, hint: str | None = None) -> FileError:
    """Translate an `OSError` into a `FileError` (or `DiskFull`) naming the file and the operation."""
    where = path or exc.filename or "?"
    reason = exc.strerror or str(exc)
    if exc.errno in _FULL:
        return DiskFull(f"{where}: cannot {operation}: {reason}", path=str(where), operation=operation,
                        errno=exc.errno, hint=hint or "free space on that file system, then run the command again")
    if hint is None and exc.errno in (errno_codes.EACCES, errno_codes.EPERM):
        hint = "check the permissions of the file and its directory"
    return FileError(f"{where}: cannot {operation}: {reason}", path=str(where), operation=operation,
                     errno=exc.errno, hint=hint)


def _disk_nearly_full(path: str) -> bool:
    probe = path
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    try:
        st = os.statvfs(probe or ".")
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 20)


def lmdb_error(exc: Exception, path: str, operation: str, *, hint: str | None = None) -> PitrError:
    """Translate an LMDB error raised on the environment at `path`.

    A full map or a write failing on a full file system becomes `DiskFull`
    (LMDB reports ENOSPC from its page writes as EIO, so the file system is
    asked); everything else becomes `FileError` naming the environment.
    """
    name = type(exc).__name__
    if name == "MapFullError":
        return DiskFull(f"{path}: cannot {operation}: the LMDB map is full", path=path, operation=operation,
                        hint=hint or "the database reached its configured size; report this as a bug")
    if name in ("DiskError", "Error", "PanicError") and _disk_nearly_full(path):
        return DiskFull(f"{path}: cannot {operation}: no space left on the device ({exc})", path=path,
                        operation=operation, errno=errno_codes.ENOSPC,
                        hint=hint or "free space on that file system, then run the command again")
    if name in ("CorruptedError", "PageNotFoundError", "BadChecksumError", "InvalidError",
                "VersionMismatchError", "IncompatibleError"):
        return CorruptData(f"cannot {operation}: the LMDB file is damaged ({exc})", path=path, hint=hint)
    return FileError(f"{path}: cannot {operation}: {exc}", path=path, operation=operation, hint=hint)


class SourceError(PitrError):
    """A source of commits (such as etcd) failed or answered with something unusable."""


class StorageError(PitrError):
    """A repository backend failed."""


class ObjectNotFound(StorageError):
    """The named object does not exist in the repository."""


class ObjectExists(StorageError):
    """The named object already exists; published files are never overwritten."""


class StateDamaged(CorruptData):
    """The live store's state database fails a checksum or an order rule (the WAL and the repository are not)."""


def to_corrupt(exc: SegmentsError, path: str | None = None) -> CorruptData:
    """A `segments` error as pitr's `CorruptData`, keeping its path, offset, LSN and hint;
    `path` names the file when the error itself does not."""
    if isinstance(exc, CorruptFile):
        return CorruptData(str(exc), path=exc.path or path, offset=exc.offset, lsn=exc.lsn, hint=exc.hint)
    return CorruptData(str(exc), path=path)


class StoreIsFollower(PitrError):
    """The store is a warm standby following a repository: only the follower writes it, until `pitr promote`."""

    def __init__(self, path: str, repo: str) -> None:
        self.path = path
        self.repo = repo
        self.hint = f"to make it a writable store of its own (a new history), stop the follower and run `pitr promote {path}`"
        super().__init__(f"{path} is a follower of {repo}; run pitr promote {path}")
