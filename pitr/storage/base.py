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


DAY_NS = 86_400 * 10**9
MAX_LOCK_DAYS = 36_500  # S3 accepts retention up to 100 years


@dataclass(frozen=True, slots=True)
class ObjectLock:
    """Write-once retention for every object a backend puts: S3 Object Lock in COMPLIANCE mode, each
    object retained until its put time plus `days` (nobody, root included, can delete or overwrite it
    before then). A local directory accepts it and does nothing (it has no retention)."""

    days: int

    def __post_init__(self) -> None:
        if type(self.days) is not int or not 1 <= self.days <= MAX_LOCK_DAYS:
            raise InvalidArgument(f"object lock days must be a whole number in 1..{MAX_LOCK_DAYS}, not {self.days!r}")

    def retain_until_ns(self, now_ns: int) -> int:
        """The retention date of an object put at `now_ns`, rounded up to a whole second."""
        until = now_ns + self.days * DAY_NS
        return -(-until // 10**9) * 10**9


def check_name(name: str) -> str:
    """Return `name` if it is a safe relative object name, else raise InvalidArgument."""
    if not _NAME.match(name) or any(part in (".", "..") for part in name.split("/")):
        raise InvalidArgument(f"invalid object name {name!r}")
    return name


DOWNLOAD_CHUNK = 1 << 20  # bytes a download holds in memory at once


class Storage(Protocol):
    """A repository backend: the small async interface the engine needs."""

    url: str
    object_lock: ObjectLock | None  # retention given to every object put (a no-op where unsupported)

    async def publish(self, name: str, data: bytes) -> None:
        """Store `data` as `name` atomically; raise ObjectExists if `name` exists."""

    async def publish_file(self, name: str, path: str) -> None:
        """Store the local file `path` as `name` atomically (large files in parts)."""

    async def replace(self, name: str, data: bytes) -> None:
        """Store `data` as `name` atomically, replacing any previous object. Nothing in pitr calls it:
        repositories are write-once (tests/storage/test_write_once.py); kept for older callers."""

    async def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return bytes [offset, offset+length) of `name` (to the end when length is None)."""

    async def download(self, name: str, path: str) -> int:
        """Write the whole of `name` into the local file `path` (created or truncated) and return its
        size, streaming: memory is bounded by one chunk, whatever the object's size."""

    async def stat(self, name: str) -> ObjectInfo | None:
        """The object's info, or None when it does not exist."""

    async def list(self, prefix: str, after: str | None = None) -> list[ObjectInfo]:
        """Objects whose names start with `prefix` and sort after `after`, in name order."""

    async def retained_until(self, name: str) -> int | None:
        """When `name`'s retention ends (ns since the epoch), or None when it has none (or is missing).
        Before then it cannot be deleted: `pitr cleanup` reports it and leaves it."""

    async def delete(self, name: str) -> None:
        """Remove `name`; a missing object is not an error. Only `pitr cleanup` deletes."""

    async def aclose(self) -> None:
        """Release connections and threads."""
