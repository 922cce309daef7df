"""The storage interface every repository backend implements.

Names are relative, '/'-separated paths inside the repository (for example
``segments/00000000000000000001-00000000000000000042.seg``); `check_name`
rejects anything else. Backends publish atomically: a reader sees either no
object or the whole object, never part of one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from pitr.errors import InvalidArgument

_NAME = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """A stored object's name and size in bytes."""

    name: str
    size: int


def check_name(name: str) -> str:
    """Return `name` if it is a safe relative object name, else raise InvalidArgument."""
    if not _NAME.match(name) or any(part in (".", "..") for part in name.split("/")):
        raise InvalidArgument(f"invalid object name {name!r}")
    return name


DOWNLOAD_CHUNK = 1 << 20  # bytes a download holds in memory at once


class Storage(Protocol):
    """A repository backend: the small async interface the engine needs."""

    url: str

    async def publish(self, name: str, data: bytes) -> None:
        """Store `data` as `name` atomically; raise ObjectExists if `name` exists."""

    async def publish_file(self, name: str, path: str) -> None:
        """Store the local file `path` as `name` atomically (large files in parts)."""

    async def replace(self, name: str, data: bytes) -> None:
        """Store `data` as `name` atomically, replacing any previous object (small metadata only)."""

    async def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return bytes [offset, offset+length) of `name` (to the end when length is None)."""

    async def download(self, name: str, path: str) -> int:
        """Write the whole of `name` into the local file `path` (created or truncated) and return its
        size, streaming: memory is bounded by one chunk, whatever the object's size."""

    async def stat(self, name: str) -> ObjectInfo | None:
        """The object's info, or None when it does not exist."""

    async def list(self, prefix: str, after: str | None = None) -> list[ObjectInfo]:
        """Objects whose names start with `prefix` and sort after `after`, in name order."""

    async def delete(self, name: str) -> None:
        """Remove `name`; a missing object is not an error."""

    async def aclose(self) -> None:
        """Release connections and threads."""
