"""A witness: a second place (a directory or `s3://bucket/prefix`) that keeps copies of a history's signed
checkpoints, out of reach of whoever can write to the repository.

Layout: `<store_id>/signing-key.pub` and `<store_id>/checkpoints/<16 hex LSN>.ckpt`, the same documents as
in the repository (pitr/repo/checkpoints.py), so one witness serves many histories. Nothing in a witness
is ever replaced or deleted by pitr.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from pitr.errors import InvalidArgument, NotARepository, file_error
from pitr.repo.checkpoints import PUBLIC_KEY_NAME, checkpoint_name
from pitr.storage.base import Storage

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True, slots=True)
class Witness:
    url: str
    storage: Storage

    @staticmethod
    def prefix(store_id: uuid.UUID) -> str:
        return f"{store_id}/"

    def checkpoint_object(self, store_id: uuid.UUID, lsn: int) -> str:
        return self.prefix(store_id) + checkpoint_name(lsn)

    def public_key_object(self, store_id: uuid.UUID) -> str:
        return self.prefix(store_id) + PUBLIC_KEY_NAME

    def where(self, name: str) -> str:
        return f"{self.url.rstrip('/')}/{name}"


def _local_path(url: str) -> str | None:
    match = _SCHEME.match(url)
    if match is None:
        return url
    return url[len("file://"):] if match.group(1).lower() == "file" else None


def _check_place(url: str, create: bool, repository_urls: tuple[str, ...]) -> None:
    """Refuse a witness that is a repository given, or a missing local one unless `create` (then make it)."""
    from segments.fsutil import makedirs_private

    if not url.strip():
        raise InvalidArgument("empty witness URL")
    local = _local_path(url)
    for repo_url in repository_urls:
        repo_local = _local_path(repo_url)
        if local is not None and repo_local is not None:
            same = os.path.realpath(local) == os.path.realpath(repo_local)
        else:
            same = url.rstrip("/") == repo_url.rstrip("/")
        if same:
            raise InvalidArgument(f"the witness {url} is the repository itself: a witness must be another place, "
                                  "out of reach of whoever can write to the repository")
    if local is not None and not os.path.isdir(local):
        if not create:
            raise NotARepository(f"the witness {url} does not exist",
                                 hint="pass the directory or s3:// URL given to `pitr archive --witness`")
        try:
            makedirs_private(local)
        except OSError as exc:
            raise file_error(exc, local, "create the witness directory") from exc


@asynccontextmanager
async def open_witness(url: str, *, create: bool, s3_endpoint: str | None = None,
                       repository_urls: tuple[str, ...] = ()) -> AsyncIterator[Witness]:
    """The witness at `url`. `create` makes a local witness directory (0700) that does not exist yet; without
    it, a missing one is refused (a verification against nothing would prove nothing)."""
    import anyio

    from pitr.storage import open_storage

    await anyio.to_thread.run_sync(_check_place, url, create, repository_urls)
    storage = open_storage(url, s3_endpoint=s3_endpoint)
    try:
        yield Witness(url, storage)
    finally:
        await storage.aclose()
