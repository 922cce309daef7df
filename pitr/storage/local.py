"""Repository backend on a local filesystem directory."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from typing import BinaryIO

import anyio

from pitr.errors import ObjectExists, ObjectNotFound, PitrError, RepositoryLost, StorageError, file_error
from pitr.storage.base import DOWNLOAD_CHUNK, ObjectInfo, ObjectLock, check_name
from segments.fsutil import makedirs_private, publish_atomically


def _storage_error(exc: OSError, url: str, name: str, operation: str) -> PitrError:
    """A failed file operation in the repository: DiskFull for a full file system, else StorageError."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return file_error(exc, os.path.join(url, name), operation)
    return StorageError(f"{url}: cannot {operation} {name}: {exc.strerror or exc}")


class LocalStorage:
    """Files under one directory; publish is write-temp, fsync, link, fsync-dir.

    Directories it creates are 0700 and files it publishes 0600, whatever the umask. A file system
    has no retention: an `object_lock` is accepted and does nothing (`retained_until` is always None).
    """

    def __init__(self, root: str, *, object_lock: ObjectLock | None = None) -> None:
        self.root = os.path.abspath(root)
        self.url = self.root
        self.object_lock = object_lock

    def _path(self, name: str) -> str:
        return os.path.join(self.root, *check_name(name).split("/"))

    def _publish_sync(self, name: str, write: Callable[[BinaryIO], object], overwrite: bool) -> None:
        path = self._path(name)
        try:
            if not os.path.isdir(self.root):  # never recreate a repository that was deleted under us
                raise RepositoryLost(f"{self.url}: the repository directory is gone; nothing was published",
                                     hint="archive into a new, empty repository (the old history is lost)")
            makedirs_private(os.path.dirname(path))
            publish_atomically(path, write, overwrite=overwrite)
        except FileExistsError as exc:
            raise ObjectExists(f"{self.url}: {name} already exists; published files are never "
                               "overwritten") from exc
        except OSError as exc:
            raise _storage_error(exc, self.url, name, "publish") from exc

    async def publish(self, name: str, data: bytes) -> None:
        await anyio.to_thread.run_sync(self._publish_sync, name, lambda fh: fh.write(data), False)

    async def publish_file(self, name: str, path: str) -> None:
        def copy(fh: BinaryIO) -> None:
            with open(path, "rb") as src:
                shutil.copyfileobj(src, fh, 1 << 20)

        await anyio.to_thread.run_sync(self._publish_sync, name, copy, False)

    async def replace(self, name: str, data: bytes) -> None:
        await anyio.to_thread.run_sync(self._publish_sync, name, lambda fh: fh.write(data), True)

    def _read_sync(self, name: str, offset: int, length: int | None) -> bytes:
        try:
            with open(self._path(name), "rb") as fh:
                fh.seek(offset)
                return fh.read() if length is None else fh.read(length)
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"{self.url}: {name} does not exist") from exc
        except OSError as exc:
            raise _storage_error(exc, self.url, name, "read") from exc

    async def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return await anyio.to_thread.run_sync(self._read_sync, name, offset, length)

    def _download_sync(self, name: str, path: str) -> int:
        try:
            src = open(self._path(name), "rb")  # noqa: SIM115 - closed below, errors told apart
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"{self.url}: {name} does not exist") from exc
        except OSError as exc:
            raise _storage_error(exc, self.url, name, "read") from exc
        with src:
            try:
                out = open(path, "wb")  # noqa: SIM115
            except OSError as exc:
                raise file_error(exc, path, f"write the download of {name}") from exc
            with out:
                written = 0
                while True:
                    try:
                        chunk = src.read(DOWNLOAD_CHUNK)
                    except OSError as exc:
                        raise _storage_error(exc, self.url, name, "read") from exc
                    if not chunk:
                        return written
                    try:
                        out.write(chunk)
                    except OSError as exc:
                        raise file_error(exc, path, f"write the download of {name}") from exc
                    written += len(chunk)

    async def download(self, name: str, path: str) -> int:
        return await anyio.to_thread.run_sync(self._download_sync, name, path)

    async def stat(self, name: str) -> ObjectInfo | None:
        try:
            st = await anyio.to_thread.run_sync(os.stat, self._path(name))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _storage_error(exc, self.url, name, "stat") from exc
        return ObjectInfo(name, st.st_size)

    def _list_sync(self, prefix: str, after: str | None) -> list[ObjectInfo]:
        directory, _, stem = prefix.rpartition("/")
        base = os.path.join(self.root, *directory.split("/")) if directory else self.root
        found: list[ObjectInfo] = []
        try:
            entries = list(os.scandir(base))
        except FileNotFoundError:
            return found
        except OSError as exc:
            raise _storage_error(exc, self.url, prefix, "list") from exc
        for entry in entries:
            if entry.name.startswith(".tmp-") or not entry.name.startswith(stem):
                continue
            name = f"{directory}/{entry.name}" if directory else entry.name
            try:
                if entry.is_file() and (after is None or name > after):
                    found.append(ObjectInfo(name, entry.stat().st_size))
            except FileNotFoundError:
                continue  # deleted while listing
            except OSError as exc:
                raise _storage_error(exc, self.url, name, "list") from exc
        found.sort(key=lambda info: info.name)
        return found

    async def list(self, prefix: str, after: str | None = None) -> list[ObjectInfo]:
        return await anyio.to_thread.run_sync(self._list_sync, prefix, after)

    async def retained_until(self, name: str) -> int | None:
        check_name(name)
        return None  # no retention on a file system

    async def delete(self, name: str) -> None:
        try:
            await anyio.to_thread.run_sync(os.unlink, self._path(name))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _storage_error(exc, self.url, name, "delete") from exc

    def local_path(self, name: str) -> str:
        """The file behind `name` (local backend only; lets readers use pread directly)."""
        return self._path(name)

    async def aclose(self) -> None:
        return None
