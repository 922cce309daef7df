"""Byte sources a reader pulls ranges from: a local file or a buffer already in memory."""

from __future__ import annotations

import os
from typing import Protocol

from segments._errors import CorruptFile


class RangeSource(Protocol):
    """Random access to an immutable file's bytes."""

    name: str
    size: int

    def read(self, offset: int, length: int) -> bytes: ...

    def close(self) -> None: ...


class BytesSource:
    """A whole file already in memory."""

    def __init__(self, data: bytes, name: str = "<buffer>") -> None:
        self.name = name
        self.size = len(data)
        self._data = data

    def read(self, offset: int, length: int) -> bytes:
        return read_exact(self, offset, length, self._data[offset : offset + length])

    def close(self) -> None:
        """Nothing to release: the bytes are garbage-collected with the object."""


class FileSource:
    """A local file read with pread; the file must not change while it is open."""

    def __init__(self, path: str) -> None:
        self.name = path
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.size = os.fstat(self._fd).st_size

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise CorruptFile(f"range {offset}+{length} outside the file of {self.size} bytes",
                              path=self.name, offset=offset)
        return read_exact(self, offset, length, os.pread(self._fd, length, offset))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_exact(source: RangeSource, offset: int, length: int, data: bytes) -> bytes:
    if offset < 0 or length < 0 or len(data) != length:
        raise CorruptFile(f"range {offset}+{length} outside the file of {source.size} bytes",
                          path=source.name, offset=offset)
    return data
