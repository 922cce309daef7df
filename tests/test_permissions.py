"""Everything pitr creates is private to the user: directories 0700, files 0600, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from pitr.archiver import ArchiveOptions
from pitr.archiving import archiving
from pitr.repo.repository import open_repository
from pitr.restore import RestoreOptions, RestoreTarget, restore
from pitr.snapshots.take import take_snapshot
from pitr.storage.local import LocalStorage
from pitr.store import Store
from segments.fsutil import makedirs_private, publish_atomically


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def not_private(root: Path) -> list[str]:
    """Every directory under `root` (itself included) that is not 0700 and every file that is not 0600."""
    wrong = []
    for path in [root, *sorted(root.rglob("*"))]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_symlink():
            continue
        want = 0o700 if path.is_dir() else 0o600
        if mode != want:
            wrong.append(f"{path.relative_to(root.parent)} is {mode:o}, not {want:o}")
    return wrong


@pytest.mark.parametrize("mask", [0o022, 0o000])
def test_store_repository_and_restored_store_are_private(tmp_path: Path, mask: int) -> None:
    data, repo, restored = tmp_path / "data", tmp_path / "repo", tmp_path / "restored"

    async def scenario() -> None:
        async with Store(str(data)) as store:
            async with archiving(store, str(repo), options=ArchiveOptions(interval=0.01)) as arc:
                for i in range(20):
                    await store.put(b"key%d" % i, b"value", ttl=3600 if i % 2 else None)
                await store.delete(b"key0")
                await take_snapshot(arc, prepare=store.flush)
                await store.put(b"after", b"snapshot")
        async with open_repository(str(repo)) as repository:
            await restore([repository], RestoreOptions(target=RestoreTarget(latest=True), dest=str(restored)))

    with umask(mask):
        trio.run(scenario)
    assert (repo / ".catalog").is_dir()
    assert (repo / ".work").is_dir()
    wrong = not_private(data) + not_private(repo) + not_private(restored)
    assert wrong == [], "\n".join(wrong)


@pytest.mark.parametrize("mask", [0o022, 0o000, 0o077, 0o277])
def test_published_files_and_their_directories_are_private(tmp_path: Path, mask: int) -> None:
    with umask(mask):
        makedirs_private(str(tmp_path / "a" / "b" / "c"))
        publish_atomically(str(tmp_path / "a" / "b" / "c" / "file"), lambda fh: fh.write(b"x"))
        publish_atomically(str(tmp_path / "a" / "b" / "c" / "file"), lambda fh: fh.write(b"y"), overwrite=True)
        storage = LocalStorage(str(tmp_path / "repo"))
        os.mkdir(tmp_path / "repo")
        os.chmod(tmp_path / "repo", 0o700)
        trio.run(storage.publish, "segments/deep/one.seg", b"data")
    assert not_private(tmp_path / "a") == []
    assert not_private(tmp_path / "repo") == []


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    makedirs_private(str(shared / "mine"))
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    assert stat.S_IMODE((shared / "mine").stat().st_mode) == 0o700
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        makedirs_private(str(tmp_path / "file" / "sub"))
