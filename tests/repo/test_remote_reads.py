"""A remote repository's objects are streamed into the cache and read from there, never held whole.

The backend here keeps its objects in a local directory but is not a local
repository to the engine (so everything goes through the cache, as with S3),
and it refuses to return any object larger than LIMIT in one piece: readers
must download it (`Storage.download`, streamed) or read ranges of it. A
restore with a snapshot in its plan and a verify run over it; both must be
right and neither may ask for a large object whole.
"""

from __future__ import annotations

import random
from pathlib import Path

import trio

from pitr.archiving import archiving
from pitr.catalog.catalog import Catalog
from pitr.datadir.state import StateDB
from pitr.repo.repository import Repository
from pitr.restore import RestoreOptions, RestoreResult, RestoreTarget, restore
from pitr.snapshots.take import take_snapshot
from pitr.storage import LocalStorage, ObjectInfo
from pitr.store import Store
from pitr.verify import verify_repository

LIMIT = 128 << 10  # no read may return more of an object than this


class RangeOnlyRemote:
    """A remote-looking backend over a directory that records every read of a large object whole."""

    def __init__(self, root: str) -> None:
        self._inner = LocalStorage(root)
        self.url = f"fake-remote://{root}"
        self.violations: list[str] = []
        self.downloads: list[tuple[str, int]] = []

    async def publish(self, name: str, data: bytes) -> None:
        await self._inner.publish(name, data)

    async def publish_file(self, name: str, path: str) -> None:
        await self._inner.publish_file(name, path)

    async def replace(self, name: str, data: bytes) -> None:
        await self._inner.replace(name, data)

    async def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        data = await self._inner.read(name, offset, length)
        if len(data) > LIMIT:
            self.violations.append(f"read({name!r}, {offset}, {length}) returned {len(data)} bytes")
        return data

    async def download(self, name: str, path: str) -> int:
        size = await self._inner.download(name, path)
        self.downloads.append((name, size))
        return size

    async def stat(self, name: str) -> ObjectInfo | None:
        return await self._inner.stat(name)

    async def list(self, prefix: str, after: str | None = None) -> list[ObjectInfo]:
        return await self._inner.list(prefix, after)

    async def delete(self, name: str) -> None:
        await self._inner.delete(name)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def write_history(root: Path, seed: int) -> dict[bytes, bytes]:
    """3,000 commits of incompressible values (segments and a snapshot well over LIMIT)."""
    rng = random.Random(seed)
    model: dict[bytes, bytes] = {}
    async with Store(str(root / "data")) as store, archiving(store, str(root / "repo")) as archiver:
        for i in range(3000):
            key, value = b"key:%05d" % rng.randrange(2000), rng.randbytes(200)
            await store.put(key, value)
            model[key] = value
            if i == 1999:
                await take_snapshot(archiver, prepare=store.flush)
    return model


def test_a_remote_restore_streams_every_object(tmp_path: Path, random_seed: int) -> None:
    async def main() -> None:
        model = await write_history(tmp_path, random_seed)
        remote = RangeOnlyRemote(str(tmp_path / "repo"))
        cache = tmp_path / "cache"
        catalog = Catalog(str(cache / "catalog"))  # a cold cache: the catalog is rebuilt from the files
        try:
            repo = Repository(remote, catalog, str(cache))
            result = await restore(repo, RestoreOptions(target=RestoreTarget(latest=True),
                                                        dest=str(tmp_path / "restored")))
            assert isinstance(result, RestoreResult)
            report = await verify_repository(repo)
            assert report.ok, [f.as_dict() for f in report.findings]
        finally:
            catalog.close()
            await remote.aclose()
        assert result.base_lsn > 0  # the plan held the snapshot
        state = StateDB(str(tmp_path / "restored" / "state"), readonly=True)
        try:
            assert {k: v for k, v, _e in state.iter_range(b"", None)} == model
        finally:
            state.close()
        assert not remote.violations, remote.violations
        large = [(name, size) for name, size in remote.downloads if size > LIMIT]
        assert any(name.startswith("snapshots/") for name, _ in large), remote.downloads
        assert any(name.startswith("segments/") for name, _ in large), remote.downloads
        for name, _size in large:
            cached = cache.joinpath("objects", *name.split("/"))
            assert cached.stat().st_mode & 0o077 == 0, f"{cached} is readable by others"

    trio.run(main)
