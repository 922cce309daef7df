"""Moving one published file between repositories: a local, freshly read copy, its check, its publication.

What `pitr copy` and `pitr repair` share. A file is always checked on the
local bytes that are then published (the repository's own file for a local
repository, a fresh download into a private staging directory for a remote
one), so what lands at the target is exactly what was verified.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import blake3

from pitr.errors import InvalidArgument, file_error
from pitr.repo import layout
from pitr.repo.repository import Repository
from pitr.scratch import remove_scratch
from pitr.storage import open_storage
from pitr.verify.checks import Finding, check_segment, check_snapshot
from segments.block_seal import SegmentKeys
from segments.fsutil import makedirs_private
from segments.segment_reader import SegmentMeta
from segments.source import FileSource

_HASH_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class RepoFile:
    """A segment or snapshot of a repository, by its file name (`kind` "segment" or "snapshot")."""

    name: str
    kind: str
    first_lsn: int
    last_lsn: int
    size: int

    @property
    def object_name(self) -> str:
        return layout.segment_object(self.name) if self.kind == "segment" else layout.snapshot_object(self.name)


@asynccontextmanager
async def staging_dir(repo: Repository) -> AsyncIterator[str]:
    """A private (0700) scratch directory in `repo`'s work directory, removed afterwards."""
    def make() -> str:
        try:
            makedirs_private(repo.cache_dir)
            return tempfile.mkdtemp(prefix=".transfer-", dir=repo.cache_dir)
        except OSError as exc:
            raise file_error(exc, repo.cache_dir, "create a staging directory") from exc

    path = await anyio.to_thread.run_sync(make)
    try:
        yield path
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(shutil.rmtree, path, True)


@asynccontextmanager
async def local_copy(repo: Repository, object_name: str, staging: str) -> AsyncIterator[FileSource]:
    """The bytes `repo` holds for `object_name` as an open local file (fresh: never a cached download)."""
    own = repo.local_path(object_name)
    temporary = own is None
    if own is None:
        path = await anyio.to_thread.run_sync(_temporary, staging)
    else:
        path = own
    try:
        if temporary:
            await repo.storage.download(object_name, path)
        try:
            source = await anyio.to_thread.run_sync(FileSource, path)
        except OSError as exc:
            raise file_error(exc, path, f"read {object_name}") from exc
        try:
            yield source
        finally:
            source.close()
    finally:
        if temporary:
            await anyio.to_thread.run_sync(remove_scratch, path, "remove a downloaded copy")


def _temporary(staging: str) -> str:
    try:
        fd, path = tempfile.mkstemp(dir=staging, prefix="obj-")
        os.close(fd)
    except OSError as exc:
        raise file_error(exc, staging, "create a staging file") from exc
    return path


def check_file(file: RepoFile, source: FileSource, keys: SegmentKeys | None = None
               ) -> tuple[SegmentMeta | None, Finding | None]:
    """Full verification of one file (every block, record and digest): its meta for a segment, or the
    problem found (a worker-thread call). An encrypted repository's `keys` open sealed files, and a
    plaintext file is then a finding."""
    sealed = keys is not None
    if file.kind == "segment":
        return check_segment(file.name, source, full=True, keys=keys, sealed=sealed)
    return None, check_snapshot(file.name, source, full=True, keys=keys, sealed=sealed)


def file_digest(source: FileSource) -> bytes:
    """BLAKE3 of the whole file (a worker-thread call): two copies are the same file when these match."""
    hasher = blake3.blake3()
    for offset in range(0, source.size, _HASH_CHUNK):
        hasher.update(source.read(offset, min(_HASH_CHUNK, source.size - offset)))
    return hasher.digest()


def local_path_of(source: FileSource) -> str:
    """The path of an open local copy (what `publish_file` sends)."""
    return source.name


def refuse_same_repository(first: str, second: str, *, s3_endpoint: str | None = None) -> None:
    """Refuse two URLs naming one repository (``./r`` and ``file:///abs/r``) before either is opened."""
    if open_storage(first, s3_endpoint=s3_endpoint).url == open_storage(second, s3_endpoint=s3_endpoint).url:
        raise InvalidArgument(f"{first!r} and {second!r} name the same repository; name two different places")
