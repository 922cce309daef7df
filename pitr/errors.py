"""Errors raised by pitr.

Tree::

    PitrError                       root of everything pitr raises on purpose
    ├── InvalidArgument (ValueError) bad input: names the argument, key or line
    ├── StoreLocked                 another process holds the store (carries its PID)
    ├── StoreClosed                 the store was closed or poisoned by an fsync failure
    ├── CorruptData                 a file fails its checks (carries path, offset, LSN, hint)
    ├── OutsideWindow               a restore or read target outside the recoverable window
    ├── ForeignRepository           the repository holds another store's history
    ├── DestinationExists           a restore destination is not empty (use --force)
    ├── SourceError                 a source (etcd) failed or returned what pitr cannot use
    └── StorageError                a repository backend failed
        ├── ObjectNotFound
        └── ObjectExists            publishing would overwrite a published file

Errors from `segments` are translated at the boundary with the cause kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class PitrError(Exception):
    """Root of the errors pitr raises."""


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


class CorruptData(PitrError):
    """A file fails a checksum, a bound or a layout rule."""

    def __init__(self, message: str, *, path: str | None = None, offset: int | None = None,
                 lsn: int | None = None, hint: str | None = None) -> None:
        self.path = path
        self.offset = offset
        self.lsn = lsn
        self.hint = hint
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Window:
    """A recoverable interval of commit times (ns) and LSNs, inclusive."""

    start_ns: int
    end_ns: int
    start_lsn: int
    end_lsn: int


class OutsideWindow(PitrError):
    """The requested target is outside every recoverable window."""

    def __init__(self, message: str, windows: Sequence[Window]) -> None:
        self.windows = list(windows)
        super().__init__(message)


class ForeignRepository(PitrError):
    """The repository belongs to another store's history."""


class DestinationExists(PitrError):
    """The restore destination exists and is not empty."""


class SourceError(PitrError):
    """A source of commits (such as etcd) failed or answered with something unusable."""


class StorageError(PitrError):
    """A repository backend failed."""


class ObjectNotFound(StorageError):
    """The named object does not exist in the repository."""


class ObjectExists(StorageError):
    """The named object already exists; published files are never overwritten."""
