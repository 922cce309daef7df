"""Errors raised by the `segments` package.

Tree::

    SegmentsError                 root; every parser failure is one of these
    ├── CorruptFile               bytes that fail a checksum, a bound or a layout rule
    │   └── MidLogCorruption      a bad WAL record followed by valid ones: refuse to open
    ├── UnsupportedVersion        a newer format version than this reader knows
    ├── ChainError                a broken link between consecutive segments
    └── WriterPoisoned            an fsync failed earlier; the writer must be reopened

Every error carries the file path and, where known, the byte offset and LSN,
so an operator can find the damage with `python -m segments dump`.
"""

from __future__ import annotations


class SegmentsError(Exception):
    """Root of every error raised by `segments`."""


class CorruptFile(SegmentsError):
    """A file (or buffer) fails a checksum, a length bound or a layout rule."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        offset: int | None = None,
        lsn: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = path
        self.offset = offset
        self.lsn = lsn
        self.hint = hint
        self.reason = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.path is not None:
            where.append(str(self.path))
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        if self.lsn is not None:
            where.append(f"LSN {self.lsn}")
        text = f"{': '.join([', '.join(where)] if where else [])}{': ' if where else ''}{self.reason}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text

    def located(self, *, path: str | None = None, offset_base: int = 0) -> CorruptFile:
        """Return a copy with the file path set and the offset shifted by `offset_base`."""
        return type(self)(
            self.reason,
            path=path if path is not None else self.path,
            offset=None if self.offset is None else self.offset + offset_base,
            lsn=self.lsn,
            hint=self.hint,
        )


class MidLogCorruption(CorruptFile):
    """A WAL record fails its checks while valid records follow it."""


class UnsupportedVersion(SegmentsError):
    """The file was written by a newer format version than this reader supports."""

    def __init__(self, path: str | None, kind: str, found: int, supported: int) -> None:
        self.path = path
        self.found = found
        self.supported = supported
        super().__init__(
            f"{path or '<buffer>'}: {kind} format version {found} is newer than the "
            f"supported version {supported} (hint: upgrade pitr to read this file)"
        )


class ChainError(SegmentsError):
    """Consecutive segments do not link: missing, duplicated, reordered or altered."""

    def __init__(self, message: str, *, path: str | None = None, previous: str | None = None) -> None:
        self.path = path
        self.previous = previous
        super().__init__(message)


class WriterPoisoned(SegmentsError):
    """An earlier fsync failed; nothing more is acknowledged until the file is reopened."""
