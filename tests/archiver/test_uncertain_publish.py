"""A segment publish that landed but reported failure is retried with the same bytes, not re-sealed.

The archiver used to delete such a file (it might or might not exist) before
publishing a new chunk over the same LSNs; a write-once repository deletes
nothing outside cleanup, so the retry publishes exactly the chunk that failed:
the same name, the same bytes (accepted where it already landed), and never a
second file over the same LSNs, whatever commits arrived meanwhile.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pitr.archiver import ArchiveOptions, Archiver
from pitr.archiving import StoreSource
from pitr.errors import StorageError
from pitr.repo.repository import open_repository
from pitr.store import Store
from pitr.verify import verify_repository
from segments import parse_segment_name

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


@pytest.mark.parametrize("landed", [True, False])
async def test_a_publish_reported_failed_is_retried_as_it_was(tmp_path: Path, landed: bool) -> None:
    data = str(tmp_path / "data")
    async with Store(data) as store:
        for n in range(5):
            await store.put(b"k%d" % n, b"v")
        source = StoreSource(store)
        async with open_repository(str(tmp_path / "repo"), create=True) as repo:
            archiver = Archiver(source, [repo], ArchiveOptions(interval=3600.0))
            await archiver.start()
            real_publish = repo.storage.publish
            deleted: list[str] = []
            real_delete = repo.storage.delete
            failures = [0]

            async def publish(name: str, blob: bytes) -> None:
                if name.startswith("segments/") and not failures[0]:
                    failures[0] += 1
                    if landed:
                        await real_publish(name, blob)  # it lands, but the answer is lost
                    raise StorageError(f"{repo.url}: injected failure publishing {name}")
                await real_publish(name, blob)

            async def delete(name: str) -> None:
                deleted.append(name)
                await real_delete(name)

            repo.storage.publish = publish  # type: ignore[method-assign]
            repo.storage.delete = delete  # type: ignore[method-assign]
            assert await archiver.cycle() == 0, "the first publish failed: nothing shipped"
            assert archiver.failing
            for n in range(5, 9):  # more commits before the retry: a new chunk would reach further
                await store.put(b"k%d" % n, b"v")
            await store.flush()
            assert await archiver.cycle() == 9
            assert not archiver.failing
            await repo.sync()
            report = await verify_repository(repo)
            assert report.ok, report.findings
    assert deleted == []
    names = sorted(os.listdir(tmp_path / "repo" / "segments"))
    ranges = [parse_segment_name(n) for n in names]
    assert ranges == [(1, 5), (6, 9)], f"the failed chunk 1..5 published again as it was, then the rest: {names}"
