"""The store under asyncio (through anyio), not only trio: group commit, reads, reopen."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pitr.store import Store

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_concurrent_writers_share_fsyncs_and_everything_survives_reopen(tmp_path: Path) -> None:
    async with Store(str(tmp_path)) as store:
        async def writer(w: int) -> list[int]:
            return [(await store.put(b"w%02d-%03d" % (w, i), b"v%d" % i)).lsn for i in range(50)]

        lsns = [lsn for got in await asyncio.gather(*(writer(w) for w in range(16))) for lsn in got]
        assert sorted(lsns) == list(range(1, 16 * 50 + 1)), "every commit got its own dense LSN"
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
