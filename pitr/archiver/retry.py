"""How the archiver treats a failure: translated at the boundary, then retried with backoff or fatal.

Transient failures (a full disk, a file or storage call that failed, a source
that went away) leave the history intact: the archiver retries them with
exponential backoff and reports them sparingly (the first time, then after 2,
4, 8 ... failures, and once when they clear). Everything else pitr raises
(`RepositoryLost`, `ForeignRepository`, `CorruptData` of its own history, a
closed store) means continuing could publish a wrong history, so it ends the
archiver with that error.
"""

from __future__ import annotations

from dataclasses import dataclass

import lmdb

from pitr.errors import CorruptData, FileError, PitrError, SourceError, StorageError, file_error, lmdb_error
from segments import SegmentsError

TRANSIENT = (FileError, StorageError, SourceError)


def translate(exc: BaseException, *, catalog_path: str, operation: str, where: str | None = None) -> PitrError | None:
    """`exc` as a `PitrError` (None for an exception pitr does not know: a bug, left to escape).

    `where` names the place an `OSError` without a file name is reported at.
    """
    if isinstance(exc, PitrError):
        return exc
    if isinstance(exc, lmdb.Error):
        return lmdb_error(exc, catalog_path, operation)
    if isinstance(exc, OSError):
        return file_error(exc, exc.filename or where, operation)
    if isinstance(exc, SegmentsError):
        return CorruptData(str(exc), path=getattr(exc, "path", None), offset=getattr(exc, "offset", None),
                           lsn=getattr(exc, "lsn", None), hint=getattr(exc, "hint", None))
    return None


def is_transient(error: PitrError) -> bool:
    """Whether retrying later may succeed without anyone repairing the history."""
    return isinstance(error, TRANSIENT)


@dataclass(slots=True)
class Backoff:
    """Consecutive failures of one repository, when to try next, and what is worth reporting."""

    initial: float
    maximum: float
    failures: int = 0
    retry_at: float = 0.0
    last_message: str | None = None

    def waiting(self, now: float) -> bool:
        """Whether the next attempt is not due yet."""
        return self.failures > 0 and now < self.retry_at

    def failed(self, now: float, message: str) -> str | None:
        """Record a failure; the line to report, or None when it would repeat itself."""
        self.failures += 1
        delay = min(self.initial * 2 ** min(self.failures - 1, 40), self.maximum)
        self.retry_at = now + delay
        if message != self.last_message:
            self.last_message = message
            return f"{message} (retrying in {delay:g} s)"
        if self.failures & (self.failures - 1) == 0:
            return f"still failing ({self.failures} times, next try in {delay:g} s): {message}"
        return None

    def succeeded(self) -> str | None:
        """Record a success; the recovery line if it followed failures."""
        if self.failures == 0:
            return None
        line = f"recovered after {self.failures} failed attempt{'s' if self.failures > 1 else ''}"
        self.failures = 0
        self.retry_at = 0.0
        self.last_message = None
        return line
