"""Issue #11 items 8 and 16: the local backend turns every OSError into one error naming the
repository and the object: DiskFull for a full file system, StorageError otherwise."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from pitr.errors import DiskFull, RepositoryLost, StorageError
from pitr.storage import LocalStorage
from pitr.storage import local as local_module

pytestmark = pytest.mark.anyio


def failing(code: int):  # type: ignore[no-untyped-def]
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    return fail


@pytest.mark.parametrize(("code", "kind"), [(errno.ENOSPC, DiskFull), (errno.EACCES, StorageError)])
async def test_every_operation_names_the_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int,
                                                kind: type[Exception]) -> None:
    (tmp_path / "repo").mkdir()
    storage = LocalStorage(str(tmp_path / "repo"))
    await storage.publish("segments/a", b"1")
    with monkeypatch.context() as patch:
        patch.setattr(local_module, "publish_atomically", failing(code))
        with pytest.raises(kind, match="segments/b"):
            await storage.publish("segments/b", b"2")
    with monkeypatch.context() as patch:
        patch.setattr(local_module.os, "mkdir", failing(code))
        with pytest.raises(kind, match="snapshots/c"):
            await storage.publish("snapshots/c", b"3")
    for operation, call in [("unlink", lambda: storage.delete("segments/a")),
                            ("stat", lambda: storage.stat("segments/a")),
                            ("scandir", lambda: storage.list("segments/"))]:
        with monkeypatch.context() as patch:
            patch.setattr(local_module.os, operation, failing(code))
            with pytest.raises(kind, match="segments/"):
                await call()
    assert await storage.read("segments/a") == b"1", "nothing was lost"


async def test_a_deleted_repository_directory_is_never_recreated(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    storage = LocalStorage(str(tmp_path / "repo"))
    await storage.publish("segments/a", b"1")
    shutil.rmtree(tmp_path / "repo")
    for publish in (lambda: storage.publish("segments/b", b"2"), lambda: storage.replace("watermark", b"3")):
        with pytest.raises(RepositoryLost, match="repository directory is gone"):
            await publish()
    assert not (tmp_path / "repo").exists()
