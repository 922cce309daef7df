"""The store under asyncio (through anyio), not only trio: group commit, reads, reopen."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from pitr.store import Store
from segments.wal import WalFileOps

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class CountingOps(WalFileOps):
    """The WAL's file syncs (fdatasync and fsync of its files, not of the directory), counted."""

    def __init__(self) -> None:
        self.syncs = 0
        self._lock = threading.Lock()

    def fdatasync(self, fd: int) -> None:
        super().fdatasync(fd)
        with self._lock:
            self.syncs += 1

    def fsync(self, fd: int) -> None:
        super().fsync(fd)
        with self._lock:
            self.syncs += 1


async def test_concurrent_writers_share_fsyncs_and_everything_survives_reopen(tmp_path: Path) -> None:
    ops = CountingOps()
    writers, each = 16, 50
    async with Store(str(tmp_path), wal_ops=ops) as store:
        async def writer(w: int) -> list[int]:
            return [(await store.put(b"w%02d-%03d" % (w, i), b"v%d" % i)).lsn for i in range(each)]

        before = ops.syncs
        lsns = [lsn for got in await asyncio.gather(*(writer(w) for w in range(writers))) for lsn in got]
        syncs = ops.syncs - before
        assert sorted(lsns) == list(range(1, writers * each + 1)), "every commit got its own dense LSN"
        # 16 writers always have a commit waiting: while one group is fsynced the others queue up
        # and share the next fsync (measured: 50 fsyncs for 800 commits). One fsync per commit, or
        # per two, means the groups are not forming.
        assert 0 < syncs <= len(lsns) // 4, f"{len(lsns)} concurrent commits took {syncs} WAL fsyncs"
        async with store.batch() as batch:
            batch.put(b"batch-a", b"1")
            batch.delete(b"w00-000")
        assert await store.compare_and_set(b"batch-a", b"1", b"2") is not None
        assert await store.get(b"batch-a") == b"2"
        assert await store.get(b"w00-000") is None
        last = store.last_lsn
    async with Store(str(tmp_path)) as store:
        assert store.last_lsn == last
        assert await store.get(b"w15-049") == b"v49"
        assert await store.get(b"batch-a") == b"2"
